"""What the drivers do before a job starts: check the config against the installed models,
partition the TAG (or reuse matching partitions), and lay out ``output_dir``.

:func:`prepare_run` is the one sequence both drivers (:mod:`lmgnn_dist.drivers.pipeline`,
:mod:`lmgnn_dist.drivers.ray_pipeline`) run; every bad input ends in one ``error:`` line, exit code 2,
before any process starts.
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Tuple

from ..config import ConfigError, RunConfig
from ..run.runplan import RunPlan, said_changes


def check_model_paths(cfg: RunConfig) -> None:
    """Every configured LM (``model.lm`` and per-type ``model.encoders`` paths) must resolve,
    a type's own LM must use the vocabulary of ``model.lm``'s tokenizer (the partitions
    store token ids of that one), and with ``model.pooling=auto`` each LM's folder must
    declare a supported pooling (:func:`~lmgnn_dist.model.pooling.declared_pooling`; this
    imports torch), and with ``model.lora.rank >= 1`` each LM must have the modules
    ``model.lora.target_modules`` names (:func:`~lmgnn_dist.model.lora.check_lora_targets`;
    imports transformers and PEFT, ~3 s). Checked before anything starts.

    Raises FileNotFoundError / ConfigError naming the config key.
    """
    from partition.tokenize import load_tokenizer, resolve_model_path

    from ..data.node_inputs import EMBEDDING, SHARED

    own = [(f"model.encoders.{nt}", p) for nt, p in cfg.model.encoders.items()
           if p not in (SHARED, EMBEDDING)]
    for key, path in [("model.lm", cfg.model.lm)] + own:
        try:
            folder = resolve_model_path(path)
        except (FileNotFoundError, ImportError) as exc:
            raise FileNotFoundError(f"{key}: {exc}") from None
        if cfg.model.pooling == "auto":
            from ..model.pooling import declared_pooling

            try:
                declared_pooling(folder)
            except ConfigError as exc:
                raise ConfigError(f"{key} with model.pooling=auto: {exc}") from None
        if cfg.model.lora.rank:
            from ..model.lora import check_lora_targets

            check_lora_targets(folder, cfg.model.lora, key)
    if own:
        vocab = load_tokenizer(cfg.model.lm).get_vocab()
        for key, path in own:
            if load_tokenizer(path).get_vocab() != vocab:
                raise ConfigError(f"{key}={path!r} has another vocabulary than model.lm="
                                  f"{cfg.model.lm!r}, whose tokenizer made the partitions' token "
                                  "ids; every LM of a run must share it")


def partition_options(cfg: RunConfig):
    """The :class:`~partition.options.PartitionOptions` a run's config asks for."""
    from partition.options import PartitionOptions

    d, lp = cfg.data, cfg.task.kind == "link_prediction"
    return PartitionOptions(num_parts=d.num_parts, method=d.part_method,
                            num_trainers_per_machine=d.num_trainers_per_machine,
                            model=cfg.model.lm, max_seq_len=d.max_seq_len,
                            graph_name=d.graph_name,
                            holdout_etypes=[cfg.task.target_etype] if lp else [],
                            eval_negatives=cfg.task.eval_negatives, holdout_seed=cfg.seed,
                            add_reverse_edges=d.add_reverse_edges)


def ensure_partitions(cfg: RunConfig, files: Optional[dict] = None) -> dict:
    """Partition ``cfg.data.tag_path`` into ``cfg.data.part_dir`` unless the partitions there
    were made from the same inputs (TAG files, options: their recorded fingerprint,
    :func:`partition.fingerprint.fingerprint_changes`). When they were not, rebuild them,
    saying which input changed, or with ``data.on_partition_change: refuse`` raise.
    ``files``: the TAG's hashed :func:`~partition.fingerprint.tag_files` when the caller
    already read them (:func:`prepare_run` does, for the run plan), so the TAG is hashed once.

    Raises
    ------
    ConfigError naming the changed inputs (``refuse``); the partitioner's one-line errors
    (TAGFormatError / ValueError / FileNotFoundError).
    """
    from partition.build import load_partition_meta, partition_tag
    from partition.fingerprint import META_FILE, fingerprint_changes

    d, opts = cfg.data, partition_options(cfg)
    fresh = not (Path(d.part_dir) / META_FILE).exists()
    if not fresh:
        changes = fingerprint_changes(d.part_dir, d.tag_path, opts, files)
        recorded = load_partition_meta(d.part_dir).get("tag")
        if recorded != str(Path(d.tag_path).resolve()):
            changes.insert(0, f"TAG folder {recorded} -> {Path(d.tag_path).resolve()}")
        if not changes:
            print(f"[pipeline] using existing partitions in {d.part_dir}", flush=True)
            return load_partition_meta(d.part_dir)
        said = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5
                                         else "")
        if d.on_partition_change == "refuse":
            raise ConfigError(f"data.part_dir={d.part_dir} holds partitions of other inputs "
                              f"({said}); data.on_partition_change=refuse")
        print(f"[pipeline] the partitions in {d.part_dir} are stale ({said}): rebuilding",
              flush=True)
    log = Path(cfg.output_dir) / "logs" / "partition.log"
    print(f"[pipeline] partitioning {d.tag_path} into {d.num_parts} parts ({d.part_method}) "
          f"-> {d.part_dir} (output: {log})", flush=True)
    t0 = time.time()
    try:
        with output_to(log):  # DGL's partitioner talks a lot, partly from C++
            partition_tag(d.tag_path, d.part_dir, opts)
    finally:  # our own notes (reverse relations, hold-out, text-less types) on the console
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("[partition] "):
                print(line, flush=True)
    print(f"[pipeline] partitioned in {time.time() - t0:.1f}s", flush=True)
    return load_partition_meta(d.part_dir)


@contextmanager
def output_to(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2, so C/C++ output too)
    to the end of ``path`` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with open(path, "a", encoding="utf-8") as f:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def check_inputs(cfg: RunConfig) -> None:
    """Offline, in well under a second (a few with ``model.lora``), before anything starts:
    every configured LM resolves
    (:func:`check_model_paths`), ``data.max_seq_len`` fits the LM's positions,
    ``data.tag_path`` is a folder whose files can be read, the task's target exists in the
    TAG with the columns it needs, and -- when a planned stage trains on the task (the
    baseline, stages 2 and 3, stage 1 with ``objective: task``) -- its targets can train and
    be selected (:func:`partition.task_check.check_task_targets`).

    Raises
    ------
    ConfigError / TAGFormatError / FileNotFoundError with one line naming the key or file.
    """
    from partition.fingerprint import tag_files
    from partition.task_check import check_task_against_tag, check_task_targets
    from partition.tokenize import check_max_seq_len

    check_model_paths(cfg)
    try:
        check_max_seq_len(cfg.model.lm, cfg.data.max_seq_len)
    except ValueError as exc:
        raise ConfigError(f"data.max_seq_len: {exc}") from None
    t, tag = cfg.task, Path(cfg.data.tag_path)
    if not tag.is_dir():
        raise ConfigError(f"data.tag_path={cfg.data.tag_path}: " + (
            "not a folder" if tag.exists() else "TAG folder does not exist"))
    tag_files(tag, hashes=False)  # each file can be read (a symlink loop names itself)
    check_task_against_tag(tag, t.kind, t.target_ntype, t.target_etype)
    if cfg.baseline or any(k != 1 for k in cfg.stages) or (
            1 in cfg.stages and cfg.stage1.objective == "task"):
        check_task_targets(tag, t.kind, t.target_ntype, t.target_etype)


def prepare_run(cfg: RunConfig, config_path: Optional[str] = None
                ) -> Tuple[RunPlan, dict, str]:
    """Check, partition and lay out a run, in that order, before any job starts.

    1. the inputs fit (:func:`check_inputs`: models, ``max_seq_len``, task vs TAG), the run
       folder may be written (:func:`lmgnn_dist.run.folder.check_run_dir`: new, empty or
       the project's own; never the ``config_path`` file) and the run plan can run (stage 3
       finds a stage-2 checkpoint; ``resume: strict`` finds no stale one);
    2. the folder is marked and the resolved config every process reads is written
       (``configs/<NNN>.yaml``, one per invocation, and ``config.yaml``);
    3. the TAG is partitioned unless matching partitions exist (:func:`ensure_partitions`);
    4. complete checkpoints trained on other inputs than this config's are named (they run
       again, :meth:`RunPlan.stale`); ``output_dir`` is cleaned of a killed run's temp
       folders (and, with ``resume: false``, of the planned stages' old checkpoints).

    Returns ``(plan, partition meta, path of the resolved config)``.

    Raises
    ------
    ValueError (``ConfigError``, ``PlanError``, ``RunDirError``, ``TAGFormatError``) or
    FileNotFoundError with one line naming the key, file or stage at fault; nothing has
    started and nothing is written then.
    """
    from partition.fingerprint import fingerprint

    from ..config import to_yaml
    from ..run.folder import check_run_dir, claim, write_config

    check_inputs(cfg)
    check_run_dir(cfg.output_dir, cfg.data.tag_path, cfg.data.part_dir, config_path)
    fp = fingerprint(cfg.data.tag_path, partition_options(cfg))  # hashes the TAG, once
    plan = RunPlan.from_config(cfg, fingerprint=fp)
    plan.check()
    claim(cfg.output_dir)
    resolved = write_config(to_yaml(cfg), cfg.output_dir, config_path)
    meta = ensure_partitions(cfg, fp["files"])
    for name, why in plan.stale().items():
        print(f"[pipeline] {name} in {cfg.output_dir} was trained on other inputs "
              f"({said_changes(why)}): not reused", flush=True)
    plan.prepare_output_dir()
    return plan, meta, resolved

