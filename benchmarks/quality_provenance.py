"""Which code produced each stage of each record, and the rule that refuses a row mixing code.

Per stage of a record (:func:`provenance`): ``code``, the label of the code that trained it
(``<commit>``, ``<commit>+dirty`` or ``unknown``), and ``copied_from``, the run whose stage
folder was copied into this run's (None: it trained in this run).

- Records written since issue 21 say so per stage: ``stages[s]["code"] = {"commit",
  "dirty"}`` (from the stage's ``metrics.json``, written by the process that trained it, so a
  copy keeps its origin's) and ``stages[s]["copied_from"] = {"run", "path"}``.
- Older records carry only the record's ``commit``/``dirty`` and ``reused`` (the stages the
  harness copied in that invocation). A stage whose metrics (val/test accuracy, macro-F1 and
  seconds, wall time to the microsecond) equal the same stage of an earlier record of the same
  part and seed did not train there: it takes that record's provenance and, when that record is
  of another run, is a copy of it (a copy made by an earlier attempt, which the record does not
  list). A stage listed in ``reused`` with no identical earlier stage is a copy of unknown code.

The rule (:func:`refusal`): a row (one stage of one run, over seeds) is aggregated only when
each stage it used -- itself and the stages it starts from (``lms_from`` / ``head_from`` of
:mod:`lmgnn_dist.stages`) -- ran the same code in every seed and none was copied, unless the
run's definition says why it may (``mixed_code_ok`` / ``copies_ok``: a reason). A dirty tree
or an unknown commit cannot be shown to equal another seed's code, so with two or more seeds
it counts as different. (Stages of one seed may differ from each other: a consistent recipe
whose stage 3 ran at a later commit than its stage 2, in every seed alike, is not mixed.)
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lmgnn_dist.stages import BY_NAME  # noqa: E402  (the stage table; no torch, no DGL)

UNKNOWN = "unknown"
#: the stage metrics that identify a stage's training (a copy has them all equal)
IDENTITY = ("val_acc", "test_acc", "val_macro_f1", "test_macro_f1", "seconds")


def code_label(commit: Optional[str], dirty: Optional[bool]) -> str:
    """``abc1234``, ``abc1234+dirty``, or ``unknown`` (no commit)."""
    return UNKNOWN if not commit else str(commit) + ("+dirty" if dirty else "")


def used_stages(stage: str, present: Sequence[str]) -> List[str]:
    """``stage`` and the stages of ``present`` it starts from, transitively (the stage table's
    ``lms_from`` and ``head_from``), in run order of the table."""
    out, todo = set(), [stage]
    while todo:
        s = todo.pop()
        if s in out or s not in present:
            continue
        out.add(s)
        row = BY_NAME.get(s)
        todo += [d for d in ((row.lms_from, row.head_from) if row else ()) if d]
    return [s for s in BY_NAME if s in out] + sorted(out - set(BY_NAME))


def _identity(metrics: dict) -> Tuple:
    return tuple(metrics.get(k) for k in IDENTITY)


def provenance(records: Sequence[dict]) -> Dict[int, Dict[str, dict]]:
    """``id(record)`` -> stage -> ``{"code": label, "copied_from": run or None}`` for every
    successful record (module docstring)."""
    out: Dict[int, Dict[str, dict]] = {}
    seen: Dict[Tuple, dict] = {}  # (part, seed, stage, identity) -> first provenance
    for rec in records:
        if rec.get("status") != "ok":
            continue
        reused = rec.get("reused") or {}
        mine = out.setdefault(id(rec), {})
        for stage, met in rec.get("stages", {}).items():
            key = (rec["part"], int(rec["seed"]), stage, _identity(met))
            if isinstance(met.get("code"), dict):  # recorded per stage
                copied = met.get("copied_from")
                mine[stage] = {"code": code_label(met["code"].get("commit"),
                                                  met["code"].get("dirty")),
                               "copied_from": copied.get("run") if copied else None}
            elif key in seen:  # identical to an earlier record's stage: trained there
                first = seen[key]
                copied = first["copied_from"] or (first["run"] if first["run"] != rec["run"]
                                                  else None)
                mine[stage] = {"code": first["code"], "copied_from": copied}
            elif stage in reused.get("stages", []):
                mine[stage] = {"code": UNKNOWN, "copied_from": reused.get("run")}
            else:
                mine[stage] = {"code": code_label(rec.get("commit"), rec.get("dirty")),
                               "copied_from": None}
            seen.setdefault(key, dict(mine[stage], run=rec["run"]))
    return out


def _seed_code(prov: Dict[str, dict], stages: Sequence[str]) -> str:
    """``abc1234`` when every used stage ran it, else ``abc1234 (stage1, stage2), def5678
    (stage3)``."""
    by_code: Dict[str, List[str]] = {}
    for s in stages:
        by_code.setdefault(prov[s]["code"], []).append(s)
    if len(by_code) == 1:
        return next(iter(by_code))
    return ", ".join(f"{c} ({', '.join(ss)})" for c, ss in by_code.items())


def refusal(part: str, label: str, run: str, stage: str, recs: Sequence[dict],
            prov: Dict[int, Dict[str, dict]], flags: Optional[dict] = None
            ) -> Tuple[Optional[str], Optional[str]]:
    """Whether the row ``label`` (``stage`` of ``run`` on ``part``) may be aggregated over its
    seeds' records ``recs`` (module docstring). Returns ``(refused, allowed)``: ``refused``
    is the one line naming the row, the seeds and their code (None: aggregate it);
    ``allowed`` the note when the run's ``flags`` (``mixed_code_ok`` / ``copies_ok``: why)
    let mixed code or copies through (None otherwise)."""
    flags = flags or {}
    seeds = [int(r["seed"]) for r in recs]
    codes, copies, per_stage = [], [], {}
    for r in recs:
        p = prov[id(r)]
        used = used_stages(stage, list(p))
        codes.append(f"seed {r['seed']} {_seed_code(p, used)}")
        for s in used:
            per_stage.setdefault(s, set()).add(p[s]["code"])
        copied = [s for s in used if p[s]["copied_from"]]
        if copied:
            copies.append(f"seed {r['seed']} {', '.join(copied)} from "
                          + ", ".join(sorted({p[s]['copied_from'] for s in copied})))
    mixed = any(len(labels) > 1 or (len(recs) > 1 and any(
        lb == UNKNOWN or lb.endswith("+dirty") for lb in labels)) for labels in per_stage.values())
    head = (f"{part} / {label} (run {run}, {stage}), seed{'s' if len(seeds) > 1 else ''} "
            f"{', '.join(map(str, seeds))}")
    why, allowed, reasons = [], [], []
    for bad, key, text in ((mixed, "mixed_code_ok", "ran different code: " + "; ".join(codes)),
                           (bool(copies), "copies_ok", "copied stages: " + "; ".join(copies))):
        if bad and flags.get(key):
            allowed.append(text)
            reasons.append(f"{key}: {flags[key]}")
        elif bad:
            why.append(text)
    if why:
        return f"refused to aggregate {head}: " + " | ".join(why), None
    if allowed:
        return None, f"aggregated {head} although it " + " | ".join(allowed) + \
            f" ({'; '.join(reasons)})"
    return None, None
