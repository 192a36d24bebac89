"""Issues 12's and 22's targets, checked on the aggregated rows of ``QUALITY.md`` (mean test accuracy
over the seeds each row has; a check on rows with fewer seeds than asked is provisional).

Each target compares two row labels of a part: ``a - b`` against a threshold.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

from quality_defs import RUNS, TUNED_FROZEN

FROZEN = "frozen LM + RGCN"
LM_ONLY = "LM-only fine-tune (MLP head)"
STAGE2 = "task-tuned LM + RGCN (stage 2)"
FULL = "full pipeline (stage 3)"
JOINT2 = "frozen LM + RGCN (stage 2 of the joint run)"
JOINT3 = "joint fine-tune from pre-trained LM"
#: issue 22's baseline, the tuned frozen LM + RGCN (mean pooling), and the stage-3 rows of the
#: pipelines paired against it (``quality_defs.AGAINST_TUNED``)
TUNED = RUNS[TUNED_FROZEN]["rows"]["stage2"]
PIPELINES = [RUNS[r]["rows"]["stage3"] for r in RUNS if "against" in RUNS[r]]

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
    # issue 22: >= +2.0 on the random split, the same sign on the time split
    *[(f"{full} >= tuned frozen LM + RGCN + 2 points", full, TUNED, 0.02, False,
       ("arxiv_random",)) for full in PIPELINES],
    *[(f"{full} > tuned frozen LM + RGCN", full, TUNED, 0.0, True, ("arxiv",))
      for full in PIPELINES],
]


def _paired_for(paired: Optional[Dict[str, List[dict]]], part: str, a: str, b: str):
    """The paired result ``a - b`` of ``part`` (by row labels) with a test interval, or None."""
    for res in (paired or {}).get(part, []):
        if res.get("label_a") == a and res.get("label_b") == b and res.get("test"):
            return res
    return None


def check(agg: Dict[str, List[dict]], seeds_asked: Optional[int] = None,
          targets: Sequence[tuple] = TARGETS,
          paired: Optional[Dict[str, List[dict]]] = None) -> List[dict]:
    """One entry per (target, part) whose two rows both have test accuracy: ``part``,
    ``what``, ``diff`` (mean test acc a - b), ``n`` (the fewer seeds of the two rows),
    ``partial`` (fewer seeds than ``seeds_asked``), ``interval`` ((lo, hi) of the paired t
    interval of ``a - b`` over seeds, from ``paired`` (:func:`quality_paired.paired`), or
    None when the two rows are not a paired comparison; where fewer than 2 seeds pair because
    the others ran on other kinds of CPU, the comparison's unpaired Welch interval, with
    ``unpaired`` True and " (unpaired)" after ``holds``) and ``holds``: ``"yes"`` / ``"no"``
    when the interval lies on one side of the threshold, ``"not resolved"`` when it contains
    it (PROTOCOL.md: no direction is claimed then); without an interval, ``"yes (means
    only)"`` / ``"no (means only)"``."""
    out = []
    for part, rows in agg.items():
        by = {r["label"]: r for r in rows if r.get("test_acc")}
        for what, a, b, thr, strict, parts in targets:
            if (parts is not None and part not in parts) or a not in by or b not in by:
                continue
            diff = by[a]["test_acc"][0] - by[b]["test_acc"][0]
            n = min(by[a]["n"], by[b]["n"])
            res = _paired_for(paired, part, a, b)
            t = res["test"] if res else None
            interval = (t["lo"], t["hi"]) if t and t.get("n", 0) >= 2 else None
            w = res.get("welch") if res else None
            unpaired = interval is None and bool(w) and not math.isnan(w["lo"])
            if unpaired:  # seeds on other kinds of CPU: the Welch interval over all seeds
                interval = (w["lo"], w["hi"])
            if interval is None:
                ok = diff > thr if strict else diff >= thr
                holds = f"{'yes' if ok else 'no'} (means only)"
            elif (interval[0] > thr) if strict else (interval[0] >= thr):
                holds = "yes"
            elif (interval[1] <= thr) if strict else (interval[1] < thr):
                holds = "no"
            else:
                holds = "not resolved"
            if unpaired:
                holds += " (unpaired)"
            out.append({"part": part, "what": what, "diff": diff, "n": n, "holds": holds,
                        "interval": interval, "unpaired": unpaired,
                        "partial": seeds_asked is not None and n < seeds_asked})
    return out


def markdown(checks: List[dict]) -> List[str]:
    """The ``QUALITY.md`` section listing :func:`check`'s entries."""
    lines = ["## Targets (issues 12 and 22), on test accuracy", "",
             "`holds` from the paired t interval over seeds where the two rows are a paired "
             "comparison (`not resolved`: the interval contains the threshold, so no direction "
             "is claimed; PROTOCOL.md); where the seeds cannot pair because they ran on other "
             "kinds of CPU, from the unpaired Welch interval over all seeds of both rows "
             "(`(Welch)`, `(unpaired)`); else from the means alone.", ""]
    if not checks:
        return lines + ["No pair of rows to compare yet.", ""]
    lines += ["| part | target | mean difference (points) | paired t 95 % | holds | seeds |",
              "|---|---|---|---|---|---|"]
    for c in checks:
        iv = (f"[{100 * c['interval'][0]:+.2f}, {100 * c['interval'][1]:+.2f}]"
              + (" (Welch)" if c.get("unpaired") else "") if c["interval"] else "-")
        lines.append(f"| {c['part']} | {c['what']} | {100 * c['diff']:+.2f} | {iv} | "
                     f"{c['holds']} | {c['n']}{' (provisional)' if c['partial'] else ''} |")
    return lines + [""]
