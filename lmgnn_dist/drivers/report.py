"""``<output_dir>/report.png``: one picture of a run, drawn from its ``results.json``.

Six panels (matplotlib, ``Agg``; a stage that did not run leaves its panel saying so):

1. stage 1 training loss per step (LM link prediction, eq. 2);
2. training loss per epoch of stage 2 and of the frozen-LM baseline;
3. stage 3 training loss per step;
4. validation curve: the task's primary metric per epoch of stage 2 and the baseline (the
   best epoch marked), and stage 3's value after its final re-encode;
5. val / test primary metric per stage (baseline, stage 2, stage 3) as bars;
6. stage 3's time split (seconds per phase, max over trainers).

The panel titles are stored in the PNG's ``Panels`` text field (one per line, `` (empty)``
after a panel without data), so a reader (or a test) can tell what the picture holds without
looking at it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

from ..stages import labels_of

#: the panels' titles, in drawing order
PANELS = ("stage 1: LM link-prediction loss", "stage 2: GNN training loss",
          "stage 3: training loss", "validation curve", "val / test per stage",
          "stage 3: time split")


def stage_label(key: str, summary: dict) -> str:
    """Short name of a stage of a run, from the stage table and the variant the stage
    recorded (:func:`lmgnn_dist.stages.labels_of`)."""
    gnn = summary.get("config", {}).get("model", {}).get("gnn", "rgcn")
    return labels_of(key, summary.get("stages", {}).get(key) or {}, gnn).short


def _empty(ax, title: str, why: str = "not run") -> None:
    ax.set_title(title)
    ax.set_gid("empty")
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _loss(ax, title: str, losses, xlabel: str, label: str = None) -> None:
    ax.set_title(title)
    xs = range(1, len(losses) + 1)
    ax.plot(xs, losses, marker="." if len(losses) < 40 else None, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)


def write_report(summary: dict, path: Path) -> Path:
    """Draw ``summary`` (a ``results.json``, :func:`lmgnn_dist.drivers.results.write_results`) into the
    PNG ``path``; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages: Dict[str, dict] = summary.get("stages", {})
    primary = summary.get("primary", "acc")
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    a = axes.ravel()
    # 1: stage 1 loss per step
    s1 = stages.get("stage1")
    if s1 and s1.get("losses"):
        task_tuned = s1.get("variant") == "task"  # stage1.objective: task
        _loss(a[0], "stage 1: LM fine-tune loss (task, MLP head)" if task_tuned else PANELS[0],
              s1["losses"], "step")
    else:
        _empty(a[0], PANELS[0])
    # 2: stage 2 / baseline loss per epoch
    drawn = False
    for key in ("baseline", "stage2"):
        st = stages.get(key)
        if st and st.get("losses"):
            _loss(a[1], PANELS[1], st["losses"], "epoch", stage_label(key, summary))
            drawn = True
    if drawn:
        a[1].legend()
    else:
        _empty(a[1], PANELS[1])
    # 3: stage 3 loss per step
    s3 = stages.get("stage3")
    if s3 and s3.get("losses"):
        _loss(a[2], PANELS[2], s3["losses"], "step")
    else:
        _empty(a[2], PANELS[2], "not run" if not s3 else "no training step")
    # 4: validation curve
    ax = a[3]
    drawn = False
    for key in ("baseline", "stage2"):
        hist = (stages.get(key) or {}).get("val_history")
        if hist and primary in hist[0]:
            ys = [h[primary] for h in hist]
            line, = ax.plot(range(1, len(ys) + 1), ys, label=stage_label(key, summary))
            best = stages[key].get("best_epoch")
            if isinstance(best, int) and 0 <= best < len(ys):
                ax.plot([best + 1], [ys[best]], "o", color=line.get_color())
            drawn = True
    if s3 and isinstance(s3.get(f"val_{primary}"), (int, float)):
        kept = (f", kept: {s3['head']} head, LMs of step {s3.get('lm_step')}"
                if s3.get("head") else ", end")
        ax.axhline(s3[f"val_{primary}"], ls="--", color="black",
                   label=stage_label("stage3", summary) + kept)
        drawn = True
    if drawn:
        ax.set_title(PANELS[3])
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"val {primary}")
        ax.grid(alpha=0.3)
        ax.legend()
    else:
        _empty(ax, PANELS[3])
    # 5: val / test bars per stage
    ax = a[4]
    keys = [k for k in ("baseline", "stage1", "stage2", "stage3")  # stage 1: task-tuned only
            if isinstance((stages.get(k) or {}).get(f"val_{primary}"), (int, float))]
    if keys:
        import numpy as np

        x = np.arange(len(keys))
        for off, split in ((-0.2, "val"), (0.2, "test")):
            vals = [stages[k].get(f"{split}_{primary}", float("nan")) for k in keys]
            bars = ax.bar(x + off, vals, 0.4, label=split)
            for b, v in zip(bars, vals):
                ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.3f}", ha="center",
                        va="bottom", fontsize=8)
        ax.set_xticks(x, [stage_label(k, summary).replace(" (", "\n(") for k in keys], fontsize=8)
        shown = [stages[k].get(f"{s}_{primary}") for k in keys for s in ("val", "test")]
        shown = [v for v in shown if isinstance(v, (int, float))]
        ax.set_ylim(max(0.0, min(shown) - 0.1), max(shown) + 0.05)
        ax.set_ylabel(primary)
        ax.set_title(PANELS[4])
        ax.legend(loc="upper left", fontsize=8)
    else:
        _empty(ax, PANELS[4])
    # 6: stage 3 time split
    ax = a[5]
    split = (s3 or {}).get("time_split_s") or {}
    if split:
        names = sorted(split, key=split.get)
        ax.barh(names, [split[n] for n in names])
        for i, n in enumerate(names):
            ax.text(split[n], i, f" {split[n]:.1f}s", va="center", fontsize=8)
        ax.set_xlabel("seconds (max over trainers)")
        ax.set_title(PANELS[5])
        ax.set_xlim(0, max(split.values()) * 1.25 or 1)
    else:
        _empty(ax, PANELS[5])
    cfg = summary.get("config", {})
    fig.suptitle(f"{summary.get('task', '')} on {cfg.get('data', {}).get('graph_name', '')}: "
                 f"{Path(str(cfg.get('model', {}).get('lm', ''))).name}; "
                 f"wall {summary.get('wall_s', 0):.0f}s")
    fig.tight_layout()
    path = Path(path)
    drawn = [ax.get_title() + (" (empty)" if ax.get_gid() == "empty" else "") for ax in a]
    fig.savefig(path, dpi=90, metadata={"Panels": "\n".join(drawn)})
    plt.close(fig)
    return path


def panels_of(path: Path) -> List[str]:
    """The panel titles stored in a ``report.png`` (see the module docstring)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.text.get("Panels", "").split("\n")
