"""The run's results: ``<output_dir>/results.json`` (written by the drivers only, from the
stage checkpoints' ``metrics.json``) and the tables printed at the end of a run.

``results.json``: ``config`` (as the user gave it), ``task``, ``primary`` (the validation
metric that selects models, ``task.eval_metric``), ``metric_names``, ``stages`` (stage name ->
its ``metrics.json``), ``wall_s``, ``peak_rss_job_mb`` and ``restarts``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from partition.task_kinds import TASK_KINDS, metric_info

from ..run.checkpoint import write_json_atomic
from ..config import to_dict
from ..stages import STAGE_ORDER, labels_of

def format_table(results: Dict[str, dict], metric: str = "acc", gnn: str = "rgcn") -> str:
    """The per-stage table printed at the end of a run: val/test ``metric`` (the task's
    primary one), wall time and peak memory per stage (RSS, and GPU memory when a stage used
    a GPU: ``peak_gpu_mem_mib``, max over trainers); each row is labelled by the stage table
    (:mod:`lmgnn_dist.stages`) for the variant the stage recorded in its metrics and the
    run's GNN encoder ``gnn`` (``model.gnn``)."""
    name = metric.replace("_", "-")
    gpu = any((r.get("peak_gpu_mem_mib") or 0) > 0 for r in results.values())
    head = (f"{'stage':34s} {'val ' + name:>12s} {'test ' + name:>12s} {'time (s)':>9s} "
            f"{'peak RSS/trainer':>17s}" + (f" {'peak GPU mem':>13s}" if gpu else ""))
    lines = [head, "-" * len(head)]
    for key in STAGE_ORDER:
        r = results.get(key)
        if r is None:
            continue
        label = labels_of(key, r, gnn).row
        val = f"{r['val_' + metric]:.4f}" if "val_" + metric in r else "-"
        test = f"{r['test_' + metric]:.4f}" if "test_" + metric in r else "-"
        extra = (f"   (LP loss {r['loss_first']:.3f} -> {r['loss_last']:.3f})"
                 if key == "stage1" and r.get("loss_first") is not None
                 and r.get("variant") != "task" else "")
        gpu_mem = f" {r.get('peak_gpu_mem_mib') or 0:9.0f} MiB" if gpu else ""
        lines.append(f"{label:34s} {val:>12s} {test:>12s} {r['seconds']:9.1f} "
                     f"{r['peak_rss_mb_max_trainer']:13.0f} MiB{gpu_mem}{extra}")
    return "\n".join(lines)


def write_results(cfg, stages: Dict[str, dict], wall_s: float, peak_rss_job_mb: float,
                  restarts: int, peak_label: str = "servers + trainers + driver") -> dict:
    """Write ``<output_dir>/results.json`` (atomically) and ``report.png``
    (:mod:`lmgnn_dist.drivers.report`), print the table and the picture's path, return the summary.

    ``stages``: stage name -> its checkpoint's metrics (:meth:`RunPlan.results`).
    """
    primary, names = metric_info(cfg.task.kind, cfg.task.eval_metric)
    res_path = Path(cfg.output_dir) / "results.json"
    summary = {"config": to_dict(cfg), "task": cfg.task.kind, "primary": primary,
               "metric_names": list(names), "stages": stages, "wall_s": wall_s,
               "peak_rss_job_mb": peak_rss_job_mb, "restarts": restarts}
    write_json_atomic(str(res_path), summary)
    print("\n" + format_table(stages, primary, cfg.model.gnn))
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


def task_rows(summary: dict) -> List[dict]:
    """One row per stage of a run's ``results.json`` that the stage table shows in the
    several-task table (``task_row``): the task, its target, and every scalar val/test metric
    plus per-class F1 where the task has classes."""
    cfg, rows = summary["config"]["task"], []
    target = cfg[TASK_KINDS[summary["task"]].target_key]
    for key in STAGE_ORDER:
        r = summary["stages"].get(key)
        gnn = summary["config"].get("model", {}).get("gnn", "rgcn")
        label = labels_of(key, r, gnn).task_row if r is not None else None
        if label is None:
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
