"""What ``bench_quality.py`` puts into a record from a run's output folder: the budget, the
stages copied from another run, and per stage its metrics, the code that trained it and its
per-node test correctness.

A record's ``stages[<stage>]`` holds:

- the scalar metrics of :data:`quality_report.METRICS` (``val_acc``, ``test_acc``, ...) and
  the cost metrics of :data:`COST_KEYS` the stage reports;
- ``code``: ``{"commit", "dirty"}`` of the process that trained the stage (the stage's
  ``metrics.json`` ``code``, :mod:`lmgnn_dist.run.code_version`; ``dirty``: a tracked file other
  than the harness's own outputs :data:`OUTPUTS` differed from the commit); a copied stage
  keeps its origin's. ``{"commit": None, "dirty": None}`` when the stage does not say;
- ``copied_from``: ``{"run", "path"}`` when the harness copied the stage folder from another
  run (the ``copied_from.json`` it leaves in the copy, so a later attempt still knows);
- ``test_correct``: the stage's ``test_predictions.npz`` as :func:`quality_stats.pack_correct`
  (whether each test node, in ascending node-id order, was predicted right).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np

import quality_stats as qs

#: the harness's own outputs, tracked but not code: they do not make a tree dirty
OUTPUTS = ("benchmarks/quality_runs.jsonl", "benchmarks/QUALITY.md", "benchmarks/quality.png",
           "benchmarks/RESULTS.md")
#: the marker a copied stage folder holds
COPIED = "copied_from.json"
#: a stage's cost and selection metrics a record keeps beside the scores (stage 3's
#: :meth:`lmgnn_dist.trainer.joint_inputs.JointInputs.stats` and :class:`JointTrainer` summary;
#: stage 2's ``encode_s``): seconds of training (validation and the start's cache fill
#: excluded), of validation, of that fill and of the frozen encode, optimizer steps, epochs
#: over the training targets, LM encodings per LM node per epoch by kind, the trainers' peak
#: RSS (MiB), and which head stage 3 kept
COST_KEYS = ("train_s", "validation_s", "cache_fill_s", "encode_s", "steps", "steps_per_epoch",
             "epochs", "lm_encodings_per_node_per_epoch", "peak_rss_mb_max_trainer", "head",
             "best_step", "train_step_s")
#: config keys copied from results.json into each record's ``budget``
BUDGET_KEYS = ("stage1.objective", "stage1.epochs", "stage1.max_steps", "stage1.batch_size",
               "stage1.lm_lr", "stage2.epochs", "stage2.batch_size", "stage3.epochs",
               "stage3.max_steps", "stage3.batch_size", "stage3.lm_train_nodes", "stage3.lm_lr",
               "stage3.gnn_lr", "stage3.refit_gnn", "stage3.eval_every", "data.max_seq_len",
               "model.fanouts", "launch.debug_local", "launch.num_trainers")


def _get(cfg: dict, dotted: str):
    for k in dotted.split("."):
        cfg = cfg.get(k, {}) if isinstance(cfg, dict) else {}
    return cfg if cfg != {} else None


def budget(res: dict) -> dict:
    """The :data:`BUDGET_KEYS` of a ``results.json``'s config, a stage's keys only when it
    ran (stage 2's also for the baseline, which trains with them)."""
    ran = set(res.get("stages", {})) | ({"stage2"} if "baseline" in res.get("stages", {}) else set())
    cfg = res.get("config", {})
    out = {k: _get(cfg, k) for k in BUDGET_KEYS
           if not k.startswith("stage") or k.split(".")[0] in ran}
    for stage in ("stage1", "stage3"):  # an epoch budget replaces max_steps
        if out.get(f"{stage}.epochs") is not None:
            out.pop(f"{stage}.max_steps", None)
        elif f"{stage}.epochs" in out:
            out.pop(f"{stage}.epochs")
    return out


def reuse_stages(base_dir: Path, out_dir: Path) -> List[str]:
    """Copy the finished ``baseline``/``stage1``/``stage2`` checkpoints of ``base_dir`` (a
    run's output folder ``<root>/<part>/<run>/seed<k>``) that ``out_dir`` lacks, each with a
    ``copied_from.json`` (``{"run": <run>, "path": base stage folder}``); returns the stages
    copied."""
    copied = []
    for stage in ("baseline", "stage1", "stage2"):
        src, dst = base_dir / stage, out_dir / stage
        if (src / "metrics.json").exists() and not dst.exists():
            shutil.copytree(src, dst)
            (dst / COPIED).write_text(json.dumps({"run": base_dir.parent.name,
                                                  "path": str(src)}))
            copied.append(stage)
    return copied


def host_info() -> Dict[str, object]:
    """This machine as a record's ``host``: ``cpus``, ``machine``, ``cpu`` (the model name)
    and ``bf16`` -- the matrix units bf16 runs on here (``amx``, ``avx512_bf16`` or ``none``,
    from :func:`lmgnn_dist.device.cpu_flags`). Runs are bit-reproducible on one kind of CPU
    only: oneDNN's bf16 kernels on AMX and on AVX512-BF16 round differently (measured: the
    same seed's Cora stage-2 test accuracy 0.8895 on AVX512-BF16, 0.8950 on AMX)."""
    import os
    import platform

    from roofline import cpu_info

    info = cpu_info()
    flags = info["flags"]
    bf16 = "amx" if "amx_bf16" in flags else "avx512_bf16" if "avx512_bf16" in flags else "none"
    return {"cpus": os.cpu_count(), "machine": platform.machine(), "cpu": info["model"] or "",
            "bf16": bf16}


def host_label(rec: dict) -> str:
    """The kind of CPU a record ran on, as far as reproducibility goes: its ``host``'s
    ``bf16`` (``amx``, ``avx512_bf16``, ``none``), or ``unknown`` for records of before
    ``host_info``."""
    return str((rec.get("host") or {}).get("bf16", "unknown"))


def code_of(metrics: dict) -> Dict[str, object]:
    """``{"commit", "dirty"}`` of a stage's ``metrics.json`` ``code`` (``{"commit",
    "modified"}``); paths in :data:`OUTPUTS` do not count as dirty."""
    code = metrics.get("code") or {}
    modified = code.get("modified")
    return {"commit": code.get("commit"),
            "dirty": None if modified is None else any(p not in OUTPUTS for p in modified)}


def stage_entry(stage_dir: Path, metrics: dict, keep: tuple) -> dict:
    """A record's entry of one stage (module docstring): the ``keep`` metrics of ``metrics``
    (the stage's ``metrics.json``), ``code``, ``copied_from`` and ``test_correct`` when the
    folder ``stage_dir`` holds them."""
    entry = {m: v for m, v in metrics.items() if m in keep}
    entry["code"] = code_of(metrics)
    if (stage_dir / COPIED).exists():
        entry["copied_from"] = json.loads((stage_dir / COPIED).read_text())
    pred = stage_dir / "test_predictions.npz"
    if pred.exists():
        with np.load(pred) as p:
            entry["test_correct"] = qs.pack_correct(p["node_id"], p["pred"] == p["label"])
    return entry
