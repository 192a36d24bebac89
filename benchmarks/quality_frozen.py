"""Run specs of the frozen LM + RGCN (stage 2 alone) for :data:`quality_defs.RUNS`: one
pooling and precision (:func:`frozen_lm`), and issue 22 item 2's recipe search
(:func:`frozen_search`). Data only."""
from __future__ import annotations

from typing import Dict


def frozen_lm(precision: str, pooling: str, label: str, base=None) -> dict:
    """A run of stage 2 alone (the frozen LM + RGCN) with ``model.pooling`` pinned and the LMs
    in ``precision``; ``label`` is the row label's middle, between "frozen LM + RGCN" and
    " LM in <precision>"."""
    spec = {"overrides": ["stages=[2]", "baseline=false", f"launch.precision={precision}",
                          f"model.pooling={pooling}"],
            "rows": {"stage2": f"frozen LM + RGCN{label} LM in {precision}"}}
    return dict(spec, base=base) if base else spec


def frozen_search(lrs=(1e-3, 3e-3), dropouts=(0.5, 0.2), epochs: int = 60) -> Dict[str, dict]:
    """Issue 22 item 2's recipe search of the frozen LM + RGCN (bf16, mean pooling): one
    stage-2-only run per (``stage2.lr``, ``model.dropout``), each ``epochs`` long, each a
    variant of ``frozen_bf16_mean``. (Adam at a constant rate and batches seeded per epoch: the
    first 20 epochs of the lr 1e-3 / dropout 0.5 run should repeat ``frozen_bf16_mean``'s --
    check its ``val_history`` before reading shorter budgets off the longer runs.)
    A recipe is picked on validation only, then run over the part's seeds (PROTOCOL.md)."""
    out = {}
    for lr in lrs:
        for p in dropouts:
            spec = frozen_lm("bf16", "mean", f", mean pooling, {epochs} epochs, lr {lr:g}, "
                             f"dropout {p:g},", base="frozen_bf16_mean")
            spec["overrides"] += [f"stage2.epochs={epochs}", f"stage2.lr={lr:g}",
                                  f"model.dropout={p:g}"]
            out[f"frozen_search_lr{lr:g}_do{p:g}"] = spec
    return out
