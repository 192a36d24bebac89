"""``quality.png``: per part, the rows' accuracies (top) and the paired differences as a
forest plot (bottom), drawn from :func:`quality_report.aggregate` and
:func:`quality_paired.paired`."""
from __future__ import annotations

import io
import math
import os
import textwrap
from pathlib import Path
from typing import Dict, List

from quality_report import write_atomic


def _rows(ax, part: str, rows: List[dict]) -> None:
    """Test accuracy mean (dot, sample-std error bars) and validation mean (diamond) per
    aggregated row, the axis zoomed on the values (refused rows left out, said in the
    title)."""
    refused = sum(bool(r.get("refused")) for r in rows)
    rows = [r for r in rows if "test_acc" in r]
    ys = list(range(len(rows)))[::-1]
    test = [r["test_acc"][0] for r in rows]
    err = [0.0 if math.isnan(r["test_acc"][1]) else r["test_acc"][1] for r in rows]
    ax.errorbar(test, ys, xerr=err, fmt="o", color="tab:blue", capsize=3, label="test acc")
    vy = [y for y, r in zip(ys, rows) if "val_acc" in r]
    ax.scatter([r["val_acc"][0] for r in rows if "val_acc" in r], vy, marker="D",
               color="tab:orange", zorder=3, label="val acc")
    ax.set_yticks(ys)
    ax.set_yticklabels([textwrap.fill(f"{r['label']} (n={r['n']})", 48) for r in rows],
                       fontsize=8)
    values = test + [r["val_acc"][0] for r in rows if "val_acc" in r]
    if values:  # a dot plot zoomed on the rows: differences of a point stay visible
        ax.set_xlim(max(0.0, min(values) - 0.03), min(1.0, max(values) + 0.03))
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.7, max(len(rows) - 0.3, 0.7))
    ax.set_xlabel("accuracy (mean ± sample std over seeds)")
    ax.set_title(part + (f" ({refused} row(s) refused: mixed code or copies)" if refused else ""))
    if rows:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    else:
        ax.text(0.5, 0.5, "no row to show" + (" (all refused)" if refused else ""),
                ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xticks([])


#: the paired-differences panel shows at most +-this many points; a comparison beyond (a cost
#: floor's -55) is clipped at the edge and its mean written there, so it does not squash the
#: others to a dot
OFF_SCALE = 8.0


def _forest(ax, part: str, results: List[dict]) -> None:
    """One line per comparison: test-accuracy difference in points, its t interval over
    seeds (thick) and bootstrap interval over test nodes (thin, below), zero line; the x
    range is clipped to +-:data:`OFF_SCALE` when a mean lies beyond it (labelled there)."""
    ys = list(range(len(results)))[::-1]
    off = []
    for y, r in zip(ys, results):
        if r["refused"]:  # x in axes fractions: the middle of the panel
            ax.text(0.5, y, "refused (a row mixes code or copies)", ha="center", va="center",
                    fontsize=7, color="grey", transform=ax.get_yaxis_transform())
            continue
        t = r["test"]
        if not math.isnan(t["lo"]):
            ax.plot([100 * t["lo"], 100 * t["hi"]], [y + 0.1] * 2, lw=3, color="tab:blue",
                    label="t 95 % over seeds")
        if not math.isnan(t["mean"]):
            ax.plot([100 * t["mean"]], [y + 0.1], "o", color="tab:blue")
            if abs(100 * t["mean"]) > OFF_SCALE:
                off.append((y, 100 * t["mean"]))
        if r["boot"] is not None:
            obs, lo, hi = r["boot"]
            ax.plot([100 * lo, 100 * hi], [y - 0.15] * 2, lw=1.2, color="tab:orange",
                    label="bootstrap 95 % over test nodes")
            ax.plot([100 * obs], [y - 0.15], "|", color="tab:orange", ms=8)
        w = r.get("welch")
        if w and not math.isnan(w["lo"]):  # seeds on other kinds of CPU: unpaired
            ax.plot([100 * w["lo"], 100 * w["hi"]], [y + 0.3] * 2, lw=1.2, ls="--",
                    color="tab:green", label="Welch 95 % over all seeds (unpaired)")
            ax.plot([100 * w["mean"]], [y + 0.3], "s", color="tab:green", ms=3)
    if not ax.get_lines():  # nothing drawn: centre the zero line
        ax.set_xlim(-1, 1)
    elif off:
        ax.set_xlim(-OFF_SCALE, OFF_SCALE)
        for y, mean in off:
            edge = OFF_SCALE if mean > 0 else -OFF_SCALE
            ax.text(0.97 * edge, y + 0.35, f"{mean:+.1f} (off scale)", fontsize=7,
                    ha="right" if mean > 0 else "left", va="center", color="tab:blue")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([textwrap.fill(f"{r['kind']}: {r['label_a']} − {r['label_b']} "
                                      f"(n={len(r['seeds'])})", 48) for r in results], fontsize=7)
    ax.set_ylim(-0.7, max(len(results) - 0.3, 0.7))
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("test accuracy difference A − B (points)")
    ax.set_title(f"{part}: paired differences")
    handles, labels = ax.get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    if seen:
        ax.legend(seen.values(), seen.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=8)


def draw(agg: Dict[str, List[dict]], paired: Dict[str, List[dict]]):
    """The figure: a column per part, the rows' accuracies above the forest plot of its
    paired differences (a panel without data says so). Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = list(agg) or ["(no runs)"]
    n_rows = max([len(agg.get(p, [])) for p in parts] + [1])
    n_cmp = max([len(paired.get(p, [])) for p in parts] + [1])
    fig, axes = plt.subplots(2, len(parts), squeeze=False,
                             figsize=(7.5 * len(parts), 0.45 * (n_rows + n_cmp) + 4),
                             gridspec_kw={"height_ratios": [n_rows + 2, n_cmp + 2]})
    for col, part in enumerate(parts):
        _rows(axes[0][col], part, agg.get(part, []))
        if paired.get(part):
            _forest(axes[1][col], part, paired[part])
        else:
            axes[1][col].set_title(f"{part}: paired differences (none)")
            axes[1][col].set_axis_off()
    fig.tight_layout()
    return fig


def plot(agg: Dict[str, List[dict]], paired: Dict[str, List[dict]],
         path: os.PathLike) -> Path:
    """Draw :func:`draw` into the PNG ``path``, written atomically; returns the path."""
    import matplotlib.pyplot as plt

    fig = draw(agg, paired)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_atomic(path, buf.getvalue())
