"""Does stage 3's validation gain over stage 2 predict its test gain? Read off the records.

Stage 3 keeps the model (best validated joint model, or its GNN re-fit) with the highest
validation metric, and stage 2's model when nothing beats it, so ``val(stage 3) - val(stage 2)``
is >= 0 by construction (unless stage 3's inputs differ from stage 2's, as with cross-fitting's
out-of-fold rows) and a selection on a few hundred validation nodes may keep noise. A
*tie margin* (keep stage 2 unless the validation gain clears ``m`` points) helps only if runs
with a larger validation gain also gain more on test. This script takes every recorded run
with both stages (latest successful record per part, run and seed in ``quality_runs.jsonl``;
``stage3.mode=lm_only`` runs, whose stage 3 has no GNN, left out) and prints per part: the
runs whose stage 3 moved off stage 2 on validation, their mean test gain, Spearman's rank
correlation of the validation gain with the test gain, and the mean test gain of the runs at
or below / above the median validation gain (the margin the median would set).

The runs are not independent samples (variants of one recipe on the same seeds and stage-2
models); the intervals are descriptive, not a test. ``--plot FILE`` draws the scatter.

    python benchmarks/stage3_selection.py [--records F] [--plot stage3_selection.png]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence

from quality_report import latest_ok, read_records, write_atomic
from quality_stats import t_interval

HERE = Path(__file__).resolve().parent
#: stage 3's ``head`` values that mean a GNN fit on the final LM was kept
REFIT_HEADS = ("refit", "glem")


class Point(NamedTuple):
    """One run's stage 3 against its own stage 2: ``dval``, ``dtest`` in accuracy points."""
    run: str
    seed: int
    dval: float
    dtest: float
    head: str


def selection_points(records: Sequence[dict]) -> Dict[str, List[Point]]:
    """part -> the :class:`Point` of each run whose latest successful record has stage 2 and
    stage 3 ``val_acc`` / ``test_acc`` (points, x100), LM-only stage 3 runs left out; in
    record order."""
    out: Dict[str, List[Point]] = {}
    for (part, run, seed), rec in latest_ok(records).items():
        stages = rec.get("stages", {})
        s2, s3 = stages.get("stage2", {}), stages.get("stage3", {})
        if "stage3.mode=lm_only" in rec.get("overrides", []) or not all(
                k in s for s in (s2, s3) for k in ("val_acc", "test_acc")):
            continue
        out.setdefault(part, []).append(Point(
            run, seed, 100 * (s3["val_acc"] - s2["val_acc"]),
            100 * (s3["test_acc"] - s2["test_acc"]), str(s3.get("head") or "")))
    return out


def summarise(points: Sequence[Point]) -> Dict[str, object]:
    """For the runs whose stage 3 moved off stage 2 on validation (``dval > 0``): ``n`` (all
    runs), ``moved``, ``test_worse`` (moved runs that lost on test), ``dtest`` (mean and 95 %
    t interval over the moved runs, :func:`quality_stats.t_interval`), ``spearman`` (rank
    correlation of dval with dtest; NaN under 3 moved runs or constant values), ``median_dval``
    and the mean dtest of the moved runs at or below it (``low``) and above it (``high``;
    NaN when none)."""
    from scipy.stats import spearmanr

    moved = [p for p in points if p.dval > 0]
    out: Dict[str, object] = {"n": len(points), "moved": len(moved),
                              "test_worse": sum(p.dtest < 0 for p in moved)}
    if not moved:
        return out
    dv, dt = [p.dval for p in moved], [p.dtest for p in moved]
    out["dtest"] = t_interval(dt)
    out["spearman"] = (float(spearmanr(dv, dt).correlation)
                       if len(moved) >= 3 and len(set(dv)) > 1 and len(set(dt)) > 1
                       else float("nan"))
    med = statistics.median(dv)
    low = [p.dtest for p in moved if p.dval <= med]
    high = [p.dtest for p in moved if p.dval > med]
    out.update(median_dval=med, low=statistics.mean(low) if low else float("nan"),
               high=statistics.mean(high) if high else float("nan"))
    return out


def table(points: Dict[str, List[Point]]) -> str:
    """The markdown table of :func:`summarise` per part."""
    lines = ["| part | runs | moved on val | of those worse on test | mean test gain "
             "(95 % t, runs not independent) | Spearman(dval, dtest) | median dval | "
             "mean test gain, dval <= / > median |", "|" + " --- |" * 8]
    for part, pts in points.items():
        s = summarise(pts)
        if not s["moved"]:
            lines.append(f"| {part} | {s['n']} | 0 | - | - | - | - | - |")
            continue
        d = s["dtest"]
        lines.append(f"| {part} | {s['n']} | {s['moved']} | {s['test_worse']} | "
                     f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}] | "
                     f"{s['spearman']:+.2f} | {s['median_dval']:.2f} | "
                     f"{s['low']:+.2f} / {s['high']:+.2f} |")
    return "\n".join(lines)


def plot(points: Dict[str, List[Point]], path: Path) -> Path:
    """Scatter of dval (x) against dtest (y), one panel per part in which some run moved
    off stage 2; written atomically. Raises ValueError when no part has one."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = {k: v for k, v in points.items() if any(p.dval != 0 for p in v)}
    if not points:
        raise ValueError("no recorded stage 3 moved off its stage 2: nothing to draw")
    fig, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points), 3.8), squeeze=False)
    for ax, (part, pts) in zip(axes[0], points.items()):
        for refit, colour in ((True, "tab:orange"), (False, "tab:blue")):
            sel = [p for p in pts if (p.head in REFIT_HEADS) == refit]
            ax.scatter([p.dval for p in sel], [p.dtest for p in sel], s=18, color=colour,
                       alpha=0.7, label="GNN re-fit (or GLEM) kept" if refit
                       else "joint model or stage 2 kept")
        ax.axhline(0, color="grey", lw=0.8)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(f"{part} ({len(pts)} runs)")
        ax.set_xlabel("stage 3 - stage 2, val acc (points)")
    axes[0][0].set_ylabel("stage 3 - stage 2, test acc (points)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return write_atomic(path, buf.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", default=str(HERE / "quality_runs.jsonl"))
    ap.add_argument("--plot", default=None, help="write the scatter to this PNG")
    args = ap.parse_args(argv)
    points = selection_points(read_records(args.records))
    print(table(points))
    if args.plot:
        print(f"wrote {plot(points, Path(args.plot))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
