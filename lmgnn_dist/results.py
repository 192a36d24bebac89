"""The run's results: ``<output_dir>/results.json`` (written by the drivers only, from the
stage checkpoints' ``metrics.json``) and the tables printed at the end of a run.

``results.json``: ``config`` (as the user gave it), ``task``, ``primary`` (the validation
metric that selects models, ``task.eval_metric``), ``metric_names``, ``stages`` (stage name ->
its ``metrics.json``), ``wall_s``, ``peak_rss_job_mb`` and ``restarts``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from .checkpoint import write_json_atomic
from .config import to_dict

ROWS = [("baseline", "frozen LM + RGCN (baseline)"), ("stage1", "1: graph-aware LM pre-fine-tune"),
        ("stage2", "2: GNN warm-start (LM frozen)"), ("stage3", "3: joint LM+GNN fine-tune")]
#: stage 3's row when it ran with ``stage3.mode: lm_only`` (no graph), or no step at all
#: (``stage3.max_steps=0``: the stage-1 LM and stage-2 model re-encoded and evaluated)
LM_ONLY_ROW = "3: LM-only fine-tune (no graph)"
EVAL_ONLY_ROW = "3: re-encode + evaluate (0 steps)"
#: stage 1's row with ``stage1.objective: task`` (the LMs fine-tuned on the labels, MLP head)
TASK_LM_ROW = "1: LM fine-tune on the task (MLP)"


def format_table(results: Dict[str, dict], metric: str = "acc",
                 stage3_mode: str = "joint") -> str:
    """The per-stage table printed at the end of a run: val/test ``metric`` (the task's
    primary one), wall time and peak memory per stage (RSS, and GPU memory when a stage used
    a GPU: ``peak_gpu_mem_mib``, max over trainers); stage 3's row names what ran
    (``stage3_mode``)."""
    name = metric.replace("_", "-")
    gpu = any((r.get("peak_gpu_mem_mib") or 0) > 0 for r in results.values())
    head = (f"{'stage':34s} {'val ' + name:>12s} {'test ' + name:>12s} {'time (s)':>9s} "
            f"{'peak RSS/trainer':>17s}" + (f" {'peak GPU mem':>13s}" if gpu else ""))
    lines = [head, "-" * len(head)]
    for key, label in ROWS:
        r = results.get(key)
        if r is None:
            continue
        if key == "stage3":
            label = (EVAL_ONLY_ROW if r.get("steps") == 0 else
                     LM_ONLY_ROW if stage3_mode == "lm_only" else label)
        val = f"{r['val_' + metric]:.4f}" if "val_" + metric in r else "-"
        test = f"{r['test_' + metric]:.4f}" if "test_" + metric in r else "-"
        task_tuned = key == "stage1" and "val_" + metric in r
        label = TASK_LM_ROW if task_tuned else label
        extra = (f"   (LP loss {r['loss_first']:.3f} -> {r['loss_last']:.3f})"
                 if key == "stage1" and not task_tuned else "")
        gpu_mem = f" {r.get('peak_gpu_mem_mib') or 0:9.0f} MiB" if gpu else ""
        lines.append(f"{label:34s} {val:>12s} {test:>12s} {r['seconds']:9.1f} "
                     f"{r['peak_rss_mb_max_trainer']:13.0f} MiB{gpu_mem}{extra}")
    return "\n".join(lines)


def write_results(cfg, stages: Dict[str, dict], wall_s: float, peak_rss_job_mb: float,
                  restarts: int, peak_label: str = "servers + trainers + driver") -> dict:
    """Write ``<output_dir>/results.json`` (atomically) and ``report.png``
    (:mod:`lmgnn_dist.report`), print the table and the picture's path, return the summary.

    ``stages``: stage name -> its checkpoint's metrics (:meth:`RunPlan.results`).
    """
    from .tasks import metric_info

    primary, names = metric_info(cfg.task)
    res_path = Path(cfg.output_dir) / "results.json"
    summary = {"config": to_dict(cfg), "task": cfg.task.kind, "primary": primary,
               "metric_names": list(names), "stages": stages, "wall_s": wall_s,
               "peak_rss_job_mb": peak_rss_job_mb, "restarts": restarts}
    write_json_atomic(str(res_path), summary)
    print("\n" + format_table(stages, primary, cfg.stage3.mode))
    print(f"\ntotal wall time {wall_s:.1f}s; peak memory of the whole job ({peak_label}, "
          f"summed RSS) {peak_rss_job_mb:.0f} MiB"
          + (f"; {restarts} restart(s) after failures" if restarts else ""))
    print(f"results: {res_path}; checkpoints: {cfg.output_dir}/<stage>/; logs: "
          f"{cfg.output_dir}/logs/; TensorBoard: {cfg.output_dir}/tb/")
    try:
        from .report import write_report

        print(f"report: {write_report(summary, Path(cfg.output_dir) / 'report.png')}")
    except Exception as exc:  # noqa: BLE001 - the picture must never cost the results
        print(f"report.png not written: {type(exc).__name__}: {exc}")
    return summary


TASK_ROWS = [("baseline", "frozen LM + RGCN"), ("stage2", "stage 2 (warm-start)"),
             ("stage3", "after stage 3 (joint)")]
LM_ONLY_TASK_ROW = "after stage 3 (LM only)"


def task_rows(summary: dict) -> List[dict]:
    """One row per (stage of :data:`TASK_ROWS`) of a run's ``results.json``: the task, its
    target, and every scalar val/test metric plus per-class F1 where the task has classes."""
    cfg, rows = summary["config"]["task"], []
    target = cfg["target_ntype"] if summary["task"] == "node_classification" else cfg["target_etype"]
    lm_only = summary["config"].get("stage3", {}).get("mode") == "lm_only"
    for key, label in TASK_ROWS:
        r = summary["stages"].get(key)
        if r is None:
            continue
        label = LM_ONLY_TASK_ROW if key == "stage3" and lm_only else label
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
