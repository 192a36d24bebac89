"""``<output_dir>/report.png``: one picture of a run, drawn from its ``results.json``.

Up to seven panels (matplotlib, ``Agg``), in this order, three a row; a panel whose stage did
not run (or recorded nothing to draw) is left out:

1. stage 1 training loss per step (LM link prediction, eq. 2, or the task-tuned LM);
2. training loss per epoch of stage 2 and of the frozen-LM baseline;
3. stage 3 training loss per step;
4. validation per epoch of the GNN heads: the task's primary metric per epoch of the
   baseline, stage 2 and stage 3's GNN re-fit (each best epoch marked);
5. stage 3's validation per step, beside it: every validation point of the joint model (step 0
   is the stage-2 model it starts from; the best one ringed), the re-fit head's best validation
   at the step of the LMs it was trained on (a star), and the kept model's value after the
   final re-encode (dashed);
6. val / test primary metric per stage (baseline, stage 1, stage 2, stage 3) as bars;
7. stage 3's time split (seconds per phase, max over trainers).

:func:`draw_report` returns the figure (its axes' titles say which panels it holds);
:func:`write_report` saves it with the titles in the PNG's ``Panels`` text field (one per
line), so a reader (or a test) can tell what the picture holds without looking at it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Dict, List, Tuple

from ..stages import labels_of

#: the panels' titles, in drawing order
PANELS = ("stage 1: LM link-prediction loss", "stage 2: GNN training loss",
          "stage 3: training loss", "validation per epoch (GNN heads)",
          "stage 3: validation per step", "val / test per stage", "stage 3: time split")


def stage_label(key: str, summary: dict) -> str:
    """Short name of a stage of a run, from the stage table and the variant the stage
    recorded (:func:`lmgnn_dist.stages.labels_of`)."""
    gnn = summary.get("config", {}).get("model", {}).get("gnn", "rgcn")
    return labels_of(key, summary.get("stages", {}).get(key) or {}, gnn).short


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


def _loss(ax, title: str, losses, xlabel: str, label: str = None) -> None:
    ax.set_title(title)
    xs = range(1, len(losses) + 1)
    ax.plot(xs, losses, marker="." if len(losses) < 40 else None, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)


def _curve(ax, hist: List[dict], primary: str, best, label: str) -> None:
    """One per-epoch validation curve (epoch 1, 2, ...), its 0-based ``best`` epoch marked."""
    ys = [h[primary] for h in hist]
    line, = ax.plot(range(1, len(ys) + 1), ys, label=label)
    if isinstance(best, int) and 0 <= best < len(ys):
        ax.plot([best + 1], [ys[best]], "o", color=line.get_color())


def _panels(summary: dict) -> List[Tuple[str, Callable]]:
    """``(title, draw(ax))`` of every panel with something to draw, in :data:`PANELS` order."""
    stages: Dict[str, dict] = summary.get("stages", {})
    primary = summary.get("primary", "acc")
    s1, s3 = stages.get("stage1") or {}, stages.get("stage3") or {}
    refit = s3.get("refit") or {}
    out = []
    if s1.get("losses"):
        title = ("stage 1: LM fine-tune loss (task, MLP head)" if s1.get("variant") == "task"
                 else PANELS[0])
        out.append((title, lambda ax: _loss(ax, title, s1["losses"], "step")))
    gnn = [k for k in ("baseline", "stage2") if (stages.get(k) or {}).get("losses")]
    if gnn:
        def gnn_loss(ax):
            for k in gnn:
                _loss(ax, PANELS[1], stages[k]["losses"], "epoch", stage_label(k, summary))
            ax.legend(fontsize=8)
        out.append((PANELS[1], gnn_loss))
    if s3.get("losses"):
        out.append((PANELS[2], lambda ax: _loss(ax, PANELS[2], s3["losses"], "step")))
    curves = [(stages[k]["val_history"], stages[k].get("best_epoch"), stage_label(k, summary))
              for k in ("baseline", "stage2")
              if ((stages.get(k) or {}).get("val_history") or [{}])[0].get(primary) is not None]
    if (refit.get("val_history") or [{}])[0].get(primary) is not None:
        curves.append((refit["val_history"], refit.get("best_epoch"),
                       f"stage 3 re-fit (LMs of step {refit.get('lm_step')})"))
    if curves:
        def per_epoch(ax):
            for hist, best, label in curves:
                _curve(ax, hist, primary, best, label)
            ax.set(title=PANELS[3], xlabel="epoch", ylabel=f"val {primary}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        out.append((PANELS[3], per_epoch))
    hist3 = [h for h in s3.get("val_history") or [] if _num(h.get(primary))]
    if hist3:
        out.append((PANELS[4], lambda ax: _stage3_validation(ax, s3, hist3, primary)))
    keys = [k for k in ("baseline", "stage1", "stage2", "stage3")  # stage 1: task-tuned only
            if _num((stages.get(k) or {}).get(f"val_{primary}"))]
    if keys:
        out.append((PANELS[5], lambda ax: _bars(ax, stages, keys, primary, summary)))
    if s3.get("time_split_s"):
        out.append((PANELS[6], lambda ax: _time_split(ax, s3["time_split_s"])))
    return out


def _stage3_validation(ax, s3: dict, hist: List[dict], primary: str) -> None:
    steps, ys = [h["step"] for h in hist], [h[primary] for h in hist]
    ax.plot(steps, ys, marker="o", label="joint model (step 0: stage 2's)")
    best = s3.get("best_step")
    if best in steps:
        ax.plot([best], [ys[steps.index(best)]], "o", ms=12, mfc="none", color="tab:red",
                label=f"best joint model (step {best})")
    refit = s3.get("refit") or {}
    if _num(refit.get(f"val_{primary}")):
        kept = "kept" if refit.get("kept") else "not kept"
        ax.plot([refit.get("lm_step", steps[-1])], [refit[f"val_{primary}"]], "*", ms=14,
                color="tab:green", label=f"GNN re-fit on these LMs ({kept})")
    if _num(s3.get(f"val_{primary}")):
        ax.axhline(s3[f"val_{primary}"], ls="--", color="black",
                   label=f"kept: {s3.get('head', 'joint')} head, LMs of step "
                         f"{s3.get('lm_step')} (re-encoded)")
    ax.set(title=PANELS[4], xlabel="step", ylabel=f"val {primary}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _bars(ax, stages: Dict[str, dict], keys: List[str], primary: str, summary: dict) -> None:
    import numpy as np

    x = np.arange(len(keys))
    for off, split in ((-0.2, "val"), (0.2, "test")):
        vals = [stages[k].get(f"{split}_{primary}", float("nan")) for k in keys]
        bars = ax.bar(x + off, vals, 0.4, label=split)
        for b, v in zip(bars, vals):
            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.3f}", ha="center", va="bottom",
                    fontsize=8)
    ax.set_xticks(x, [stage_label(k, summary).replace(" (", "\n(") for k in keys], fontsize=8)
    shown = [v for v in (stages[k].get(f"{s}_{primary}") for k in keys for s in ("val", "test"))
             if _num(v)]
    ax.set_ylim(max(0.0, min(shown) - 0.1), max(shown) + 0.05)
    ax.set(ylabel=primary, title=PANELS[5])
    ax.legend(loc="upper left", fontsize=8)


def _time_split(ax, split: Dict[str, float]) -> None:
    names = sorted(split, key=split.get)
    ax.barh(names, [split[n] for n in names])
    for i, n in enumerate(names):
        ax.text(split[n], i, f" {split[n]:.1f}s", va="center", fontsize=8)
    ax.set(xlabel="seconds (max over trainers)", title=PANELS[6])
    ax.set_xlim(0, max(split.values()) * 1.25 or 1)


def draw_report(summary: dict):
    """The figure of ``summary`` (a ``results.json``, :func:`lmgnn_dist.drivers.results.
    write_results`): the panels with something to draw (module docstring), three a row.
    Returns the matplotlib figure; ``[ax.get_title() for ax in fig.axes]`` names its panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(summary)
    cols = min(3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig = plt.figure(figsize=(5 * cols, 4.25 * rows + 0.5))
    for i, (_, draw) in enumerate(panels):
        draw(fig.add_subplot(rows, cols, i + 1))
    cfg = summary.get("config", {})
    fig.suptitle(f"{summary.get('task', '')} on {cfg.get('data', {}).get('graph_name', '')}: "
                 f"{Path(str(cfg.get('model', {}).get('lm', ''))).name}; "
                 f"wall {summary.get('wall_s', 0):.0f}s"
                 + ("" if panels else " (nothing to draw)"))
    fig.tight_layout()
    return fig


def write_report(summary: dict, path: Path) -> Path:
    """Draw ``summary`` (:func:`draw_report`) into the PNG ``path``; returns ``path``."""
    import matplotlib.pyplot as plt

    fig = draw_report(summary)
    path = Path(path)
    fig.savefig(path, dpi=90, metadata={"Panels": "\n".join(ax.get_title() for ax in fig.axes)})
    plt.close(fig)
    return path


def panels_of(path: Path) -> List[str]:
    """The panel titles stored in a ``report.png`` (see the module docstring)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.text.get("Panels", "").split("\n")
