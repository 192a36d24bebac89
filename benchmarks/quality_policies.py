"""Stage 3's cost and accuracy per input policy, side by side (issue 25 item 5, issue 22 item
4): one table per part from the quality benchmark's records alone, written by
``bench_quality.py --report`` into ``QUALITY.md`` and into the marked section of
``RESULTS.md`` (:func:`write_section`).

A row is a stage-3 run of :data:`POLICIES` (the same stage 2, copied from the base run of the
same seed, so the rows differ in stage 3's input policy alone), plus two floors: the base's
stage 2 (the frozen LM) and stage 3 in mode ``lm_only`` at the same budget (the LM alone). Per
row, means over the row's seeds of its records' cost metrics
(:data:`quality_record.COST_KEYS`):

- ``s / epoch``: training seconds (validation, the start's cache fill and the final re-encode
  excluded: :func:`training_s`) over epochs of the training targets; stage 2: (stage seconds -
  the frozen encode) / epochs, and the encode once, in its own column;
- ``LM encodes / node / epoch``: LM forward passes per LM-encoded node per epoch, with
  gradient + without (cache misses, stale rows, per-step re-encodes) + refresh pipeline; cache
  reads are not encodes (GLEM's full re-encode of every node per round counts as no grad);
- ``peak RSS``: the largest trainer's peak resident set (MiB);
- val / test accuracy (mean ± sd, ddof=1), the paired test difference against the base's stage
  3 with its t 95 % interval (:mod:`quality_paired`), and on how many seeds selection kept the
  GNN re-fit (GLEM: a round's GNN) rather than the joint head or stage 2's model.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import quality_paired as qpair
import quality_report as qr

#: part -> base run (its stage 2 is every policy's start), the LM-only run (stage 3 in mode
#: ``lm_only`` at the same budget: the other floor) and the stage-3 runs in table order, each
#: with the policy's name
POLICIES: Dict[str, dict] = {
    "cora": {"base": "joint_pretrained_bf16", "lm_only": "joint_lm_only_bf16", "runs": {
        "joint_pretrained_bf16": "cache (stage 2's rows; with-grad rows written back)",
        "joint_bounded_staleness": "bounded staleness: rows <= 8 steps old + refresh 64/step",
        "joint_fresh_inputs": "every input re-encoded (no grad) with the current LM each step",
        "joint_glem": "GLEM: 2 rounds of LM (gold + GNN labels), re-encode, GNN (gold + LM "
                      "labels)",
    }},
}
#: the marker lines of the section :func:`write_section` owns in ``RESULTS.md``
BEGIN = "<!-- stage-3 input policies: written by bench_quality.py --report; edit there -->"
END = "<!-- end of stage-3 input policies -->"


def _mean(values: Sequence[float]) -> float:
    """The mean of the numbers among ``values`` (NaN for none)."""
    return qr.mean_std([float(v) for v in values if isinstance(v, (int, float))])[0]


def _num(x: float, fmt: str) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def training_s(entry: dict, start: Optional[dict] = None) -> Optional[float]:
    """Stage 3's training seconds without its start's cache fill: ``train_s`` as recorded
    since ``cache_fill_s`` exists; before, a job that did not run stage 2 itself (``start``,
    the record's stage-2 entry, was copied) counted one full no-grad encode of every node in
    ``train_s``, and the same work's seconds -- stage 2's ``encode_s``, the frozen encode of
    the same LM -- are taken off."""
    if entry.get("train_s") is None:
        return None
    if "cache_fill_s" in entry or not (start or {}).get("copied_from"):
        return entry["train_s"]
    return entry["train_s"] - start.get("encode_s", 0.0)


def _graph_free(rec: dict) -> bool:
    """Whether the record's stage 3 ran graph-free (``stage3.mode=lm_only``: no cache fill)."""
    return "stage3.mode=lm_only" in rec.get("overrides", [])


def cost(entries: Sequence[dict], starts: Optional[Sequence[Optional[dict]]] = None
         ) -> Dict[str, float]:
    """Mean cost over the per-seed stage entries ``entries`` (module docstring; ``starts``:
    each seed's stage-2 entry, for :func:`training_s`): ``s_epoch``, ``encode_s`` (stage 2's
    frozen encode), ``with_grad``/``no_grad``/``refresh``/``total`` (LM encodes per node per
    epoch), ``rss`` (MiB) and ``refit`` (seeds that kept a GNN fit on the final LM: the
    re-fit, or a GLEM round's)."""
    starts = list(starts) if starts is not None else [None] * len(entries)
    out = {"s_epoch": _mean([training_s(e, st) / e["epochs"] for e, st in zip(entries, starts)
                             if e.get("train_s") is not None and e.get("epochs")]),
           "encode_s": math.nan, "rss": _mean([e.get("peak_rss_mb_max_trainer")
                                               for e in entries])}
    if all("lm_encodings_per_node_per_epoch" not in e for e in entries):  # stage 2
        out["s_epoch"] = _mean([(e["seconds"] - e["encode_s"]) / e["epochs"] for e in entries
                                if e.get("encode_s") is not None and e.get("epochs")])
        out["encode_s"] = _mean([e.get("encode_s") for e in entries])
    per = [e.get("lm_encodings_per_node_per_epoch") or {} for e in entries]
    for k in ("with_grad", "no_grad", "refresh"):  # no grad: GLEM's full re-encodes too
        out[k] = _mean([p.get(k, 0.0) + (p.get("full_reencode", 0.0) if k == "no_grad" else 0)
                        for p in per if p])
    out["total"] = out["with_grad"] + out["no_grad"] + out["refresh"]
    out["refit"] = sum(e.get("head") in ("refit", "glem") for e in entries)
    return out


def table(records: Sequence[dict], agg: Dict[str, List[dict]],
          paired: Dict[str, List[dict]]) -> List[str]:
    """Markdown lines: per part of :data:`POLICIES` with records, the policy table (module
    docstring). Rows without records are left out; a refused row says so."""
    latest, lines = qr.latest_ok(records), []
    for part, spec in POLICIES.items():
        rows = {(r["run"], r["stage"]): r for r in agg.get(part, [])}
        base = spec["base"]
        if (base, "stage3") not in rows:
            continue
        diffs = {res["a"][0]: res for res in paired.get(part, [])
                 if res["kind"] == "variant - base" and res["b"] == (base, "stage3")
                 and res["a"][1] == "stage3"}
        lines += [f"### {part}", "",
                  "| stage 3 input policy (run) | seeds | s / epoch | LM encodes / node / "
                  "epoch: grad + no grad + refresh = total | peak RSS (MiB) | val acc | "
                  "test acc | test Δ vs cache, t 95 % (points) | kept the re-fit / a "
                  "GLEM round |",
                  "|---|---|---|---|---|---|---|---|---|"]
        floor = [(base, "stage2", f"floor: frozen LM, stage 2 ({base})"),
                 (spec["lm_only"], "stage3", f"floor: LM only, MLP head, no graph "
                                             f"({spec['lm_only']})")]
        for run, stage, name in floor + [(r, "stage3", f"{n} ({r})")
                                          for r, n in spec["runs"].items()]:
            row = rows.get((run, stage))
            if row is None:
                continue
            if row["refused"]:
                lines.append(f"| {name} | {row['n']} | refused: its seeds ran different code "
                             "or copied stages (the line in QUALITY.md) |")
                continue
            recs = [latest[(part, run, s)] for s in row["seeds"]]
            c = cost([r["stages"][stage] for r in recs],
                     [r["stages"].get("stage2") if stage == "stage3" and not _graph_free(r)
                      else None for r in recs])
            enc = (f"frozen encode once: {c['encode_s']:.1f} s" if stage == "stage2" else
                   f"{c['with_grad']:.2f} + {c['no_grad']:.2f} + {c['refresh']:.2f} = "
                   f"{c['total']:.2f}")
            d = diffs.get(run)
            delta = "base" if run == base and stage == "stage3" else "-"
            if d is not None and "test" in d:
                delta = f"{qpair._interval(d['test'])} ({d['test']['n']} seeds)"
            acc = [qr._pm(row.get(m)) for m in ("val_acc", "test_acc")]
            kept = f"{c['refit']}/{row['n']}" if stage == "stage3" and run in spec["runs"] \
                else "-"
            lines.append(f"| {name} | {row['n']} | {_num(c['s_epoch'], '.1f')} | {enc} | "
                         f"{_num(c['rss'], '.0f')} | {acc[0]} | {acc[1]} | {delta} | {kept} |")
        commits = sorted({c for r in rows.values()
                          if r["run"] in spec["runs"] or r["run"] == spec["lm_only"]
                          for c in r["commits"]})
        lines += ["", f"Code: {', '.join(commits)}. Cost columns are means over the row's "
                  "seeds; seconds from runs that may have shared the cores (see the notes). A "
                  "stage-3-only job recorded without `cache_fill_s` (before `788b96e`) counted "
                  "its start's full cache fill as training: stage 2's frozen-encode seconds "
                  "are taken off (`training_s`), which leaves that job's other start-up in.", ""]
    return lines


def write_section(path: os.PathLike, lines: Sequence[str]) -> Path:
    """Replace the text between :data:`BEGIN` and :data:`END` in ``path`` by ``lines``
    (appended with both markers when the file has none), atomically.

    Raises ``ValueError`` when the file has one marker without the other."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    body = "\n".join([BEGIN, *lines, END])
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + body + rest.split(END, 1)[1]
    elif BEGIN in text or END in text:
        raise ValueError(f"{path}: one of the markers '{BEGIN}' / '{END}' without the other")
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    return qr.write_atomic(path, text)
