"""Driver of a whole run: partition (if needed) -> launch the stages -> print the results table.

``python -m lmgnn_dist.pipeline --config examples/cora/pipeline.yaml [section.key=value ...]``

Several ``--config`` files (e.g. one per task) run one after the other; ``--summary FILE``
then writes their combined task table (:func:`format_task_table`) as JSON.

1. Tokenises and partitions ``data.tag_path`` into ``data.part_dir`` unless a partition made
   with the same options is already there.
2. Starts the DGL servers and trainers with ``launch/run_dist.py`` (``launch.debug_local``
   loopback machines, or the machines of ``launch.ip_config``); every trainer runs
   ``python -m lmgnn_dist.train`` on the resolved config.
3. Prints validation/test accuracy, wall time and peak memory of each stage from
   ``<output_dir>/results.json`` and adds the job's wall time, peak memory and number of
   restarts to it.

Fault tolerance: if the distributed job fails (a process dies or exits non-zero) it is started
again, every process afresh (new ports, new shared-memory namespace), at most
``launch.max_restarts`` times. Trainers always run with ``resume=true``, so stages whose
checkpoint is complete are not run again; the failed stage continues after its last progress
checkpoint (``checkpoint_every``), or starts from its beginning without one. Exit code
2 (bad input, e.g. a config or ip-config error) is never retried. With ``resume: false`` the
earlier checkpoints of the configured stages are removed before the first attempt instead (the
run would replace them anyway), so a restart cannot pick up a stale one.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .config import ConfigError, RunConfig, dump_config, load_config, to_dict

ROWS = [("baseline", "frozen LM + RGCN (baseline)"), ("stage1", "1: graph-aware LM pre-fine-tune"),
        ("stage2", "2: GNN warm-start (LM frozen)"), ("stage3", "3: joint LM+GNN fine-tune")]

#: exit codes that mean bad input (config, ip-config, partition mismatch): never retried
NO_RETRY_EXIT_CODES = frozenset({2})

# temp / old folders of an interrupted ``checkpoint.write_stage`` (".stage2.tmp-<pid>",
# ".stage3.partial.tmp-<pid>") and trainers' staging folders (".stage3.partial.staging")
_STALE_CKPT = re.compile(r"^\.(baseline|stage\d+)(\.partial)?\.((tmp|old)-\d+|staging)$")


def planned_stages(cfg: RunConfig) -> List[str]:
    """Checkpoint names of the stages ``cfg`` runs, in order (``baseline`` first if on)."""
    return (["baseline"] if cfg.baseline else []) + [f"stage{k}" for k in cfg.stages]


def clean_stale_checkpoints(output_dir: str) -> List[str]:
    """Remove the temp/old folders a killed :func:`~lmgnn_dist.checkpoint.write_stage` left.

    Only call this while no process of a job writes into ``output_dir``. A checkpoint folder
    ``<stage>/`` itself is only ever created complete (renamed into place with its
    ``metrics.json``), so it is left alone. Returns the names removed.
    """
    removed = []
    root = Path(output_dir)
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and _STALE_CKPT.match(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
    if removed:
        print(f"[pipeline] removed stale checkpoint temp folders of a killed run: "
              f"{', '.join(removed)}", flush=True)
    return removed


def prepare_output_dir(cfg: RunConfig) -> None:
    """Make ``cfg.output_dir`` safe to run every job with ``resume=true``.

    Removes stale checkpoint temp folders and, when ``cfg.resume`` is off, the earlier
    checkpoints of the stages this run will produce (it would replace them anyway; left in
    place, a restart after a failure would skip a stage on a stale checkpoint).
    """
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    clean_stale_checkpoints(cfg.output_dir)
    if not cfg.resume:
        old = [n for s in planned_stages(cfg) for n in (s, f"{s}.partial")
               if (Path(cfg.output_dir) / n).exists()]
        for name in old:
            shutil.rmtree(Path(cfg.output_dir) / name)
        if old:
            print(f"[pipeline] resume: false: removed the earlier checkpoint(s) {', '.join(old)} "
                  f"in {cfg.output_dir}", flush=True)


def run_with_restarts(attempt: Callable[[int], int], max_restarts: int, what: str,
                      before_retry: Optional[Callable[[], None]] = None,
                      log_prefix: str = "[pipeline]") -> Tuple[int, int]:
    """Call ``attempt(i)`` (``i`` = 0, 1, ...) until it returns 0, at most ``1 + max_restarts``
    times; an exit code in :data:`NO_RETRY_EXIT_CODES` ends at once.

    ``before_retry()`` runs before each restart. Returns ``(exit code of the last attempt,
    number of restarts)``. Exceptions of ``attempt`` (e.g. ``KeyboardInterrupt``) propagate.
    """
    restarts = 0
    while True:
        rc = attempt(restarts)
        if rc == 0:
            return 0, restarts
        if rc in NO_RETRY_EXIT_CODES:
            print(f"{log_prefix} {what} failed with exit code {rc} (bad input): not retried",
                  file=sys.stderr, flush=True)
            return rc, restarts
        if restarts >= max_restarts:
            print(f"{log_prefix} {what} failed with exit code {rc}; no restart left "
                  f"(launch.max_restarts={max_restarts})", file=sys.stderr, flush=True)
            return rc, restarts
        restarts += 1
        print(f"{log_prefix} {what} failed with exit code {rc}; restart {restarts}/{max_restarts}: "
              "all processes start afresh, completed stages are kept, the failed stage resumes "
              "from its last progress checkpoint (checkpoint_every) or its beginning", flush=True)
        if before_retry is not None:
            before_retry()


def ensure_partitions(cfg: RunConfig) -> dict:
    """Partition ``cfg.data.tag_path`` unless ``cfg.data.part_dir`` already matches the options."""
    from partition.build import META_FILE, PartitionOptions, load_partition_meta, partition_tag

    d = cfg.data
    lp = cfg.task.kind == "link_prediction"
    opts = PartitionOptions(num_parts=d.num_parts, method=d.part_method,
                            num_trainers_per_machine=d.num_trainers_per_machine,
                            model=cfg.model.lm, max_seq_len=d.max_seq_len, graph_name=d.graph_name,
                            holdout_etypes=[cfg.task.target_etype] if lp else [],
                            eval_negatives=cfg.task.eval_negatives, holdout_seed=cfg.seed)
    if (Path(d.part_dir) / META_FILE).exists():
        meta = load_partition_meta(d.part_dir)
        same = (meta["options"] == opts.__dict__
                and meta["tag"] == str(Path(d.tag_path).resolve()))
        if same:
            print(f"[pipeline] using existing partitions in {d.part_dir}", flush=True)
            return meta
    print(f"[pipeline] partitioning {d.tag_path} into {d.num_parts} parts ({d.part_method}) "
          f"-> {d.part_dir}", flush=True)
    t0 = time.time()
    partition_tag(d.tag_path, d.part_dir, opts)
    print(f"[pipeline] partitioned in {time.time() - t0:.1f}s", flush=True)
    return load_partition_meta(d.part_dir)


class TreeMemoryMonitor:
    """Samples the summed RSS of a process and all its descendants (``psutil``) every ``period_s``."""

    def __init__(self, pid: int, period_s: float = 0.5):
        self.pid, self.period_s, self.peak_bytes = pid, period_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.period_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def launch_job(cfg: RunConfig, part_config: str, command: List[str]) -> int:
    """Run ``command`` in every trainer (and DGL servers) with ``launch/run_dist.py`` as
    ``cfg.launch`` says (loopback debug machines or an ip-config); returns its exit code."""
    from launch import run_dist

    l = cfg.launch
    argv: List[str] = (["--debug-local", str(l.debug_local)] if l.debug_local > 0
                       else ["--ip-config", l.ip_config])
    argv += ["--part-config", part_config, "--workspace", cfg.output_dir,
             "--num-trainers", str(l.num_trainers), "--num-servers", str(l.num_servers),
             "--omp-threads", str(l.omp_threads), "--ssh-port", str(l.ssh_port)]
    argv += ["--ssh-user", l.ssh_user] if l.ssh_user else []
    argv += [a for opt in l.ssh_opts for a in ("--ssh-opt", opt)]
    argv += [a for k, v in l.env.items() for a in ("--env", f"{k}={v}")]
    return run_dist.main([*argv, "--", *command])


def train_command(config_path: str, *overrides: str) -> List[str]:
    """The command of every process of a stage job; always ``resume=true`` (see the module doc)."""
    return [sys.executable, "-m", "lmgnn_dist.train", "--config", config_path, "resume=true",
            *overrides]


def launch_stages(cfg: RunConfig, config_path: str, part_config: str) -> int:
    """Run the stages (``python -m lmgnn_dist.train``) on the job's trainers."""
    return launch_job(cfg, part_config, train_command(config_path))


def format_table(results: Dict[str, dict], metric: str = "acc") -> str:
    """The per-stage table printed at the end of a run: val/test ``metric`` (the task's
    primary one), wall time and peak memory per stage."""
    name = metric.replace("_", "-")
    head = (f"{'stage':34s} {'val ' + name:>12s} {'test ' + name:>12s} {'time (s)':>9s} "
            f"{'peak RSS/trainer':>17s}")
    lines = [head, "-" * len(head)]
    for key, label in ROWS:
        r = results.get(key)
        if r is None:
            continue
        val = f"{r['val_' + metric]:.4f}" if "val_" + metric in r else "-"
        test = f"{r['test_' + metric]:.4f}" if "test_" + metric in r else "-"
        extra = (f"   (LP loss {r['loss_first']:.3f} -> {r['loss_last']:.3f})"
                 if key == "stage1" else "")
        lines.append(f"{label:34s} {val:>12s} {test:>12s} {r['seconds']:9.1f} "
                     f"{r['peak_rss_mb_max_trainer']:13.0f} MiB{extra}")
    return "\n".join(lines)


def write_summary(cfg: RunConfig, stages: Dict[str, dict], wall_s: float, peak_rss_job_mb: float,
                  restarts: int, peak_label: str = "servers + trainers + driver",
                  base: Optional[dict] = None) -> dict:
    """Write ``<output_dir>/results.json``, print the table, and return the summary.

    The summary is ``base`` (the trainers' ``results.json``: any keys they add are kept) with
    ``config`` (``cfg``, as the user gave it), ``stages``, ``wall_s``, ``peak_rss_job_mb`` and
    ``restarts`` set.
    """
    from .checkpoint import write_json_atomic

    res_path = Path(cfg.output_dir) / "results.json"
    summary = dict(base or {})
    summary.update(config=to_dict(cfg), stages=stages, wall_s=wall_s,
                   peak_rss_job_mb=peak_rss_job_mb, restarts=restarts)
    write_json_atomic(str(res_path), summary)
    print("\n" + format_table(stages, summary.get("primary", "acc")))
    print(f"\ntotal wall time {wall_s:.1f}s; peak memory of the whole job ({peak_label}, "
          f"summed RSS) {peak_rss_job_mb:.0f} MiB"
          + (f"; {restarts} restart(s) after failures" if restarts else ""))
    print(f"results: {res_path}; checkpoints: {cfg.output_dir}/<stage>/")
    return summary


TASK_ROWS = [("baseline", "frozen LM + RGCN"), ("stage2", "stage 2 (warm-start)"),
             ("stage3", "after stage 3 (joint)")]


def task_rows(summary: dict) -> List[dict]:
    """One row per (stage of :data:`TASK_ROWS`) of a run's ``results.json``: the task, its
    target, and every scalar val/test metric plus per-class F1 where the task has classes."""
    cfg, rows = summary["config"]["task"], []
    target = cfg["target_ntype"] if summary["task"] == "node_classification" else cfg["target_etype"]
    for key, label in TASK_ROWS:
        r = summary["stages"].get(key)
        if r is None:
            continue
        row = {"task": summary["task"], "target": target, "model": label, "stage": key}
        row.update({k: v for k, v in r.items() if k.startswith(("val_", "test_"))})
        rows.append(row)
    return rows


def format_task_table(rows: List[dict]) -> str:
    """The table of several tasks: test (val) metrics per task and model."""
    lines = []
    for row in rows:
        cells = []
        for k, v in row.items():
            if k.startswith("test_") and isinstance(v, float):
                m = k[len("test_"):]
                cells.append(f"{m} {v:.4f} ({row['val_' + m]:.4f})")
            elif k == "test_f1_per_class":
                cells += [f"F1[{c}] {f:.4f} ({row['val_f1_per_class'][c]:.4f})"
                          for c, f in v.items()]
        lines.append(f"{row['task']:20s} {row['target']:30s} {row['model']:22s} " + "  ".join(cells))
    head = f"{'task':20s} {'target':30s} {'model':22s} metrics on test (val)"
    return "\n".join([head, "-" * (len(head) + 40)] + lines)


def check_model_paths(cfg: RunConfig) -> None:
    """Every configured LM (``model.lm`` and per-type ``model.encoders`` paths) must resolve,
    and a type's own LM must use the vocabulary of ``model.lm``'s tokenizer (the partitions
    store token ids of that one). Checked before anything starts.

    Raises FileNotFoundError / ConfigError naming the config key.
    """
    from partition.tokenize import load_tokenizer, resolve_model_path

    from .node_inputs import EMBEDDING, SHARED

    own = [(f"model.encoders.{nt}", p) for nt, p in cfg.model.encoders.items()
           if p not in (SHARED, EMBEDDING)]
    for key, path in [("model.lm", cfg.model.lm)] + own:
        try:
            resolve_model_path(path)
        except (FileNotFoundError, ImportError) as exc:
            raise FileNotFoundError(f"{key}: {exc}") from None
    if own:
        vocab = load_tokenizer(cfg.model.lm).get_vocab()
        for key, path in own:
            if load_tokenizer(path).get_vocab() != vocab:
                raise ConfigError(f"{key}={path!r} has another vocabulary than model.lm="
                                  f"{cfg.model.lm!r}, whose tokenizer made the partitions' token "
                                  "ids; every LM of a run must share it")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Partition, launch and report an LM-GNN run.")
    p.add_argument("--config", required=True, action="append",
                   help="run config YAML (repeat to run several, e.g. one per task)")
    p.add_argument("--summary", help="with several configs: write their task table here (JSON)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. stage1.max_steps=5")
    args = p.parse_args(argv)
    rows: List[dict] = []
    for path in args.config:
        rc, results = run_one(path, args.overrides)
        if rc != 0:
            return rc
        rows += task_rows(results)
    if len(args.config) > 1 or args.summary:
        print("\n" + format_task_table(rows))
        if args.summary:
            from .checkpoint import write_json_atomic

            write_json_atomic(args.summary, {"configs": args.config, "rows": rows})
            print(f"task table: {args.summary}")
    return 0


def run_one(config_path: str, overrides: Sequence[str]) -> Tuple[int, Optional[dict]]:
    """Partition, launch and report one run config; returns the exit code (2: bad input) and
    the run's ``results.json`` content (None on failure)."""
    try:
        cfg = load_config(config_path, overrides)
        check_model_paths(cfg)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    t0 = time.time()
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    resolved = str(Path(cfg.output_dir) / "config.yaml")
    dump_config(cfg, resolved)
    try:
        meta = ensure_partitions(cfg)
    except (ValueError, FileNotFoundError) as exc:  # TAGFormatError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    prepare_output_dir(cfg)
    with TreeMemoryMonitor(os.getpid()) as mem:
        rc, restarts = run_with_restarts(
            lambda _i: launch_stages(cfg, resolved, meta["part_config"]),
            cfg.launch.max_restarts, "the distributed job",
            before_retry=lambda: clean_stale_checkpoints(cfg.output_dir))
    if rc != 0:
        print(f"[pipeline] the distributed job failed (exit code {rc})", file=sys.stderr)
        return rc, None
    # the trainers' results.json has every configured stage (finished ones loaded back)
    base = json.loads((Path(cfg.output_dir) / "results.json").read_text())
    summary = write_summary(cfg, base["stages"], time.time() - t0, mem.peak_bytes / 2**20,
                            restarts, base=base)
    return 0, summary


if __name__ == "__main__":
    sys.exit(main())
