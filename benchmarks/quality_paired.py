"""Paired differences of the quality benchmark (issue 21): which comparisons, their numbers
over the records, and their ``QUALITY.md`` section. The formulas are in :mod:`quality_stats`.

Comparisons (:func:`comparisons`), each A - B on the same seed, from the run table:

- ``stage 3 - stage 2`` of every run with both rows (the same record);
- ``full pipeline - frozen``: stage 3 minus the baseline of every run with both rows (the
  same record: the same seed, partition and data);
- ``variant - base``: every row stage a run shares with its ``base`` (or ``reuse``) run --
  or with each of them, when ``base`` is a list --, against that run's record of the same seed. A seed whose variant did not start from the
  base record's stages (a copied stage whose metrics differ from the base's) is left out and
  named;
- ``against another run``: each ``(stage, other run, other stage)`` of a run's ``against``
  list, a row against another run's row of the same seed (issue 22: a pipeline's stage 3
  against the tuned frozen LM + RGCN, a stage-2-only run).

A seed whose two records ran on different kinds of CPU (:func:`quality_record.host_label`:
AMX, AVX512-BF16, ...) is left out and named too: their bf16 kernels round differently. Such
a comparison also gets the unpaired Welch interval over all seeds of both rows
(:func:`quality_stats.welch_interval`), so rows measured on different hosts still compare.

A comparison with a refused row (:func:`quality_provenance.refusal`) is refused too. Test
accuracy differences get both intervals, validation ones the t interval (what a protocol
adopts a recipe on); the bootstrap needs every seed's per-node record (``test_correct``).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import quality_provenance as qp
import quality_report as qr
import quality_stats as qs
from quality_record import host_label

Side = Tuple[str, str]  # (run, stage)


def comparisons(runs: Dict[str, dict]) -> List[Tuple[str, Side, Side]]:
    """``(kind, A, B)`` for the run table ``runs`` (run -> ``rows``, ``reuse``/``base``; a
    ``base`` may be a list of runs, one comparison each), in
    table order: ``stage 3 - stage 2``, ``full pipeline - frozen``, ``variant - base``,
    ``against another run``."""
    out = []
    for run, spec in runs.items():
        rows = spec.get("rows", {})
        if "stage3" in rows and "stage2" in rows:
            out.append(("stage 3 - stage 2", (run, "stage3"), (run, "stage2")))
        if "stage3" in rows and "baseline" in rows:
            out.append(("full pipeline - frozen", (run, "stage3"), (run, "baseline")))
        bases = spec.get("base") or spec.get("reuse")
        for base in [bases] if isinstance(bases, str) else bases or []:
            for stage in rows if base in runs else ():
                if stage in runs[base].get("rows", {}):
                    out.append(("variant - base", (run, stage), (base, stage)))
        for stage, other, other_stage in spec.get("against", ()):
            if stage in rows and other_stage in runs.get(other, {}).get("rows", {}):
                out.append(("against another run", (run, stage), (other, other_stage)))
    return out


def _other_start(a: dict, b: dict, stage: str, prov_a: Dict[str, dict], base: str) -> List[str]:
    """The stages that ``stage`` of record ``a`` (a variant) starts from, copied from the run
    ``base``, whose metrics differ from record ``b``'s (the base's record of that seed)."""
    return [s for s in qp.used_stages(stage, list(a.get("stages", {})))
            if s != stage and prov_a[s]["copied_from"] == base
            and any(a["stages"][s].get(k) != b.get("stages", {}).get(s, {}).get(k)
                    for k in qp.IDENTITY)]


def _result(kind, a, b, label_a, label_b, pairs, dropped, refused) -> dict:
    return {"kind": kind, "a": a, "b": b, "label_a": label_a, "label_b": label_b,
            "seeds": [s for s, _, _ in pairs], "dropped": dropped, "refused": refused}


def paired(records: Sequence[dict], agg: Dict[str, List[dict]], runs: Dict[str, dict],
           test_nodes: Optional[Dict[str, int]] = None) -> Dict[str, List[dict]]:
    """Per part, one result per comparison whose two rows exist: ``kind``, ``a``/``b``
    ((run, stage)), ``label_a``/``label_b``, ``seeds`` (paired), ``dropped`` (lines of
    seeds left out), ``refused`` (a line, or None), and when not refused: ``val`` and
    ``test`` (:func:`quality_stats.t_interval` in accuracy), ``boot`` ((observed, lo, hi)
    or None) with ``boot_why`` (why not), ``mdd_seeds``, ``n_test``, ``p`` (mean test
    accuracy of both sides), ``mdd_nodes`` and ``welch`` (test accuracy,
    :func:`quality_stats.welch_interval` over all seeds of both rows, where a seed was left
    out for its CPU kind; else None). ``test_nodes``: part -> test-set size to use
    when no record carries its per-node predictions."""
    latest, prov = qr.latest_ok(records), qp.provenance(records)
    test_nodes = test_nodes or {}
    out: Dict[str, List[dict]] = {}
    for part, rows in agg.items():
        by = {(r["run"], r["stage"]): r for r in rows}
        for kind, a, b in comparisons(runs):
            if a not in by or b not in by:
                continue
            ra, rb = by[a], by[b]
            pairs, dropped, other_cpu = [], [], False
            for seed in sorted(set(ra["seeds"]) & set(rb["seeds"])):
                xa, xb = latest[(part, a[0], seed)], latest[(part, b[0], seed)]
                differ = _other_start(xa, xb, a[1], prov[id(xa)], b[0]) if a[0] != b[0] else []
                hosts = (host_label(xa), host_label(xb))
                if hosts[0] != hosts[1]:
                    other_cpu = True
                    dropped.append(f"seed {seed}: {a[0]} ran on CPU kind {hosts[0]}, {b[0]} "
                                   f"on {hosts[1]} (bf16 kernels differ)")
                elif differ:
                    dropped.append(f"seed {seed}: {a[0]} did not start from {b[0]}'s "
                                   f"{', '.join(differ)} of that seed")
                else:
                    pairs.append((seed, xa["stages"][a[1]], xb["stages"][b[1]]))
            refused = next((f"row '{r['label']}' refused" for r in (ra, rb) if r["refused"]),
                           None)
            res = _result(kind, a, b, ra["label"], rb["label"], pairs, dropped, refused)
            out.setdefault(part, []).append(res)
            if not refused:
                res.update(_numbers(pairs, test_nodes.get(part)))
                res["welch"] = qs.welch_interval(
                    *[[latest[(part, run, s)]["stages"][stage]["test_acc"] for s in r["seeds"]]
                      for (run, stage), r in ((a, ra), (b, rb))]) if other_cpu else None
    return out


def _numbers(pairs, n_test_default: Optional[int]) -> dict:
    """The intervals and MDDs of one comparison's per-seed stage entries ``pairs``."""
    val = qs.t_interval([sa["val_acc"] - sb["val_acc"] for _, sa, sb in pairs
                         if "val_acc" in sa and "val_acc" in sb])
    test = qs.t_interval([sa["test_acc"] - sb["test_acc"] for _, sa, sb in pairs])
    p = sum(sa["test_acc"] + sb["test_acc"] for _, sa, sb in pairs) / (2 * len(pairs)) \
        if pairs else math.nan
    boot, why, n_test = None, None, n_test_default
    if not pairs:
        why = "no seed"
    elif not all("test_correct" in sa and "test_correct" in sb for _, sa, sb in pairs):
        why = "no per-node records"
    else:
        try:
            vecs = qs.aligned([e for _, sa, sb in pairs for e in (sa["test_correct"],
                                                                   sb["test_correct"])])
            boot = qs.paired_bootstrap(vecs[0::2], vecs[1::2])
            n_test = len(vecs[0])
        except ValueError as exc:
            why = str(exc)
    return {"val": val, "test": test, "boot": boot, "boot_why": why,
            "mdd_seeds": qs.mdd_seeds(test["sd"], test["n"]), "n_test": n_test, "p": p,
            "mdd_nodes": qs.mdd_nodes(p, n_test or 0)}


def test_set_sizes(records: Sequence[dict], default: Optional[Dict[str, int]] = None
                   ) -> Dict[str, Tuple[int, str]]:
    """Part -> (test nodes, where the count comes from): the per-node predictions of its
    latest record that has them, else ``default[part]`` (the split's size)."""
    out = {p: (n, "the split's size in quality_defs.py PARTS")
           for p, n in (default or {}).items()}
    for r in records:
        for e in r.get("stages", {}).values() if r.get("status") == "ok" else ():
            if "test_correct" in e:
                out[r["part"]] = (int(e["test_correct"]["n"]), "the records")
    return out


def _pts(x: float, sign: str = "+") -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:{sign}.2f}"


def _interval(t: dict, why_na: str = "1 seed") -> str:
    """``mean [lo, hi]`` in points; ``-`` for no seeds, ``mean (n/a: why_na)`` where the
    interval is undefined (a paired ``t`` below 2 seeds, a Welch interval with a NaN bound)."""
    if t.get("n") == 0:
        return "-"
    if t.get("n", 2) < 2 or math.isnan(t["lo"]):
        return f"{_pts(t['mean'])} (n/a: {why_na})"
    return f"{_pts(t['mean'])} [{_pts(t['lo'])}, {_pts(t['hi'])}]"


def markdown(results: Dict[str, List[dict]],
             sizes: Optional[Dict[str, Tuple[int, str]]] = None) -> List[str]:
    """The ``QUALITY.md`` section: per part its test set's size and what one seed of it
    resolves (``sizes``: :func:`test_set_sizes`), a table of the paired differences
    (accuracy points) and the lines of refused comparisons and dropped seeds."""
    sizes = sizes or {}
    lines = ["## Paired differences (issue 21)", "",
             "A - B on the same seed, in accuracy **points**. `t 95 %`: mean [mean ± "
             "t_{0.975,n-1} · sd/√n] over the n paired seeds (sample sd, ddof=1; n/a below 2 "
             "seeds). `bootstrap 95 %`: observed [percentile interval] of the test-accuracy "
             "difference over 2000 paired resamples of the test nodes (seed 0; the same nodes "
             "for both models and all seeds, per-seed differences averaged), needs per-node "
             "records. `MDD seeds`: (t_{0.975,n-1} + t_{0.8,n-1}) · sd_diff/√n, the smallest "
             "test difference a paired two-sided t test at α = 0.05 detects with power 0.8 at "
             "this seed count and observed spread. `MDD nodes`: (z_{0.975} + z_{0.8}) · "
             "sqrt(2 p (1-p) / N_test), what one seed on this test set resolves (p: mean test "
             "accuracy of A and B; two independent proportions). Formulas: "
             "`benchmarks/quality_stats.py`.", ""]
    if not results:
        return lines + ["No pair of rows to compare yet.", ""]
    head = ["comparison", "seeds", "val Δ t 95 %", "test Δ t 95 %", "test Δ bootstrap 95 %",
            "MDD seeds", "MDD nodes (N test)"]
    for part, res in results.items():
        lines += [f"### {part}", ""]
        if part in sizes:
            n, source = sizes[part]
            at = " / ".join(_pts(qs.mdd_nodes(p, n), "") for p in (0.7, 0.8, 0.9))
            lines += [f"Test set: {n} nodes (from {source}); one seed resolves "
                      f"(z_{{0.975}} + z_{{0.8}}) · sqrt(2 p (1-p) / {n}) = {at} points at "
                      "p = 0.7 / 0.8 / 0.9.", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        notes = []
        for r in res:
            what = f"{r['kind']}: {r['label_a']} − {r['label_b']}"
            if r["refused"]:
                cells = [what, ", ".join(map(str, r["seeds"])) or "-"] + ["refused"] * 3 + ["-"] * 2
                notes.append(f"- {what}: refused, {r['refused']} (see the rows above)")
            else:
                boot = (f"n/a ({r['boot_why']})" if r["boot"] is None else
                        f"{_pts(r['boot'][0])} [{_pts(r['boot'][1])}, {_pts(r['boot'][2])}]")
                nodes = "n/a" if not r["n_test"] else f"{_pts(r['mdd_nodes'], '')} ({r['n_test']})"
                cells = [what, ", ".join(map(str, r["seeds"])) or "-", _interval(r["val"]),
                         _interval(r["test"]), boot, _pts(r["mdd_seeds"], ""), nodes]
            lines.append("| " + " | ".join(cells) + " |")
            notes += [f"- {what}: {d}" for d in r["dropped"]]
            if r.get("welch"):
                w = r["welch"]
                notes.append(f"- {what}: unpaired over all seeds of both rows (Welch t 95 %, "
                             f"{w['n_a']} and {w['n_b']} seeds): test Δ "
                             f"{_interval(w, 'a row below 2 seeds')}")
        lines += [""] + notes + ([""] if notes else [])
    return lines
