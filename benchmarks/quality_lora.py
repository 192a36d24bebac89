"""Run specs of LoRA's stage-1 rate search for :data:`quality_defs.RUNS` (issue 22 item 3).
Data only."""
from __future__ import annotations

from typing import Dict, Sequence

#: ``pipeline_lora``'s adapters (the LoRA paper's RoBERTa-base ``r = alpha = 8``)
LORA = ["model.lora.rank=8", "model.lora.alpha=8", "model.lora.dropout=0.1"]


def lora_search(lrs: Sequence[float] = (1e-3, 2e-3, 5e-3)) -> Dict[str, dict]:
    """One run per stage-1 LM rate ``lr``: ``pipeline_lora``'s stages 1 (LoRA, task
    objective) and 2 only, at ``stage1.lm_lr=lr``, each a variant of ``pipeline_lora`` (stage 1
    at 5e-4), so ``variant - base`` pairs stage 1 and stage 2 by seed. Aimed at Cora
    low-label, where 5e-4 over stage 1's 30 steps left the LoRA LM at val ~0.61 against full
    fine-tuning's ~0.69. The rate is picked on **stage 2's validation accuracy** (what stage
    1's LM is for), then run with stage 3 over the part's seeds (PROTOCOL.md)."""
    out = {}
    for lr in lrs:
        out[f"lora_s1_lr{lr:g}"] = {
            "overrides": ["stages=[1,2]", "baseline=false", "stage1.objective=task", *LORA,
                          f"stage1.lm_lr={lr:g}"],
            "base": "pipeline_lora",
            "rows": {"stage1": f"LM-only fine-tune (MLP head), LoRA r 8, lr {lr:g}",
                     "stage2": f"LoRA-tuned LM (lr {lr:g}) + RGCN (stage 2)"}}
    return out
