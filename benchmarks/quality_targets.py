"""Issue 12's targets, checked on the aggregated rows of ``QUALITY.md`` (mean test accuracy
over the seeds each row has; a check on rows with fewer seeds than asked is provisional).

Each target compares two row labels of a part: ``a - b`` against a threshold.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

FROZEN = "frozen LM + RGCN"
LM_ONLY = "LM-only fine-tune (MLP head)"
STAGE2 = "task-tuned LM + RGCN (stage 2)"
FULL = "full pipeline (stage 3)"
JOINT2 = "frozen LM + RGCN (stage 2 of the joint run)"
JOINT3 = "joint fine-tune from pre-trained LM"

#: (what, a, b, threshold, strict, parts): holds when mean test acc a - b >= threshold
#: (> with ``strict``); ``parts`` None: every part
TARGETS = [
    ("full pipeline >= frozen LM + RGCN + 2 points", FULL, FROZEN, 0.02, False,
     ("arxiv", "arxiv_random")),
    ("stage 3 > stage 2", FULL, STAGE2, 0.0, True, ("arxiv", "arxiv_random")),
    ("stage 3 >= stage 2", FULL, STAGE2, 0.0, False, ("cora", "cora_low")),
    ("full pipeline >= frozen LM + RGCN", FULL, FROZEN, 0.0, False, ("cora", "cora_low")),
    ("LM-only < frozen LM + RGCN", FROZEN, LM_ONLY, 0.0, True, None),
    ("frozen LM + RGCN < full pipeline", FULL, FROZEN, 0.0, True, None),
    ("(joint run) stage 3 > stage 2", JOINT3, JOINT2, 0.0, True, None),
]


def check(agg: Dict[str, List[dict]], seeds_asked: Optional[int] = None,
          targets: Sequence[tuple] = TARGETS) -> List[dict]:
    """One entry per (target, part) whose two rows both have test accuracy: ``part``,
    ``what``, ``diff`` (mean test acc a - b), ``holds``, ``n`` (the fewer seeds of the two
    rows) and ``partial`` (fewer seeds than ``seeds_asked``)."""
    out = []
    for part, rows in agg.items():
        by = {r["label"]: r for r in rows if r.get("test_acc")}
        for what, a, b, thr, strict, parts in targets:
            if (parts is not None and part not in parts) or a not in by or b not in by:
                continue
            diff = by[a]["test_acc"][0] - by[b]["test_acc"][0]
            n = min(by[a]["n"], by[b]["n"])
            out.append({"part": part, "what": what, "diff": diff, "n": n,
                        "holds": diff > thr if strict else diff >= thr,
                        "partial": seeds_asked is not None and n < seeds_asked})
    return out


def markdown(checks: List[dict]) -> List[str]:
    """The ``QUALITY.md`` section listing :func:`check`'s entries."""
    lines = ["## Targets (issue 12), on mean test accuracy", ""]
    if not checks:
        return lines + ["No pair of rows to compare yet.", ""]
    lines += ["| part | target | difference (points) | holds | seeds |", "|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['part']} | {c['what']} | {100 * c['diff']:+.2f} | "
                     f"{'yes' if c['holds'] else 'no'} | {c['n']}"
                     f"{' (provisional)' if c['partial'] else ''} |")
    return lines + [""]
