"""The pure pieces of ``bench_quality.py``: the run log (JSON lines), which runs are done,
aggregation over seeds and the ``QUALITY.md`` table (paired differences:
:mod:`quality_paired`; the picture: :mod:`quality_plot`).

A record (one line of ``quality_runs.jsonl``) is a dict with ``part``, ``run``, ``seed``,
``overrides`` (the exact ``KEY=VALUE`` list the run was started with), ``status`` (``"ok"`` or
``"failed"``), ``commit``, ``dirty``, ``wall_s``, ``rows`` (stage -> row label, as the run
table said when it ran), ``stages`` (stage -> ``val_acc``, ``test_acc``, ``val_macro_f1``,
``test_macro_f1``, ``seconds``, whichever the run reported; since issue 21 also ``code``,
``copied_from`` and ``test_correct``: :mod:`quality_record`), ``budget``, ``host`` and
``reused`` (the stages the harness copied in for this run); a failed one has ``rc`` and
``log`` instead of ``stages``.

Spread over seeds is the **sample** standard deviation (``ddof=1``); with one seed it is NaN,
shown as ``n/a`` (and no error bar).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from quality_record import host_label

#: the per-stage numbers a record keeps (those present in the run's ``results.json``)
METRICS = ("val_acc", "test_acc", "val_macro_f1", "test_macro_f1", "seconds")
#: overrides that differ between the seeds of one run by construction (not "settings")
PER_SEED_KEYS = ("seed", "output_dir")


def write_atomic(path: os.PathLike, data) -> Path:
    """Write ``data`` (str or bytes) to ``path`` through a temporary file in the same folder
    and a rename, so a reader never sees half a file. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def append_record(path: os.PathLike, record: dict) -> None:
    """Append ``record`` as one JSON line to ``path`` (one ``write`` call, then fsync)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(path: os.PathLike) -> List[dict]:
    """The records of a JSON-lines file, in file order; [] when it does not exist. A line that
    is not a JSON object (e.g. cut short by a crash) is skipped with a warning."""
    path, out = Path(path), []
    if not path.exists():
        return out
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            out.append(rec)
        else:
            print(f"warning: {path}:{i} is not a JSON record; skipped")
    return out


def run_key(part: str, run: str, seed: int, overrides: Sequence[str]) -> Tuple:
    """What identifies a run: a recorded run with the same key is not run again."""
    return (part, run, int(seed), tuple(overrides))


def is_done(records: Iterable[dict], part: str, run: str, seed: int,
            overrides: Sequence[str], commit: Optional[str] = None) -> bool:
    """Whether ``records`` hold a *successful* run of (part, run, seed, overrides), made at
    ``commit`` on a clean tree when ``commit`` is given (PROTOCOL.md: one clean commit per
    row, so a record of other code is not this checkout's); failed runs do not count (they
    are tried again)."""
    key = run_key(part, run, seed, overrides)
    return any(r.get("status") == "ok" and
               run_key(r["part"], r["run"], r["seed"], r.get("overrides", [])) == key and
               (commit is None or (r.get("commit") == commit and not r.get("dirty")))
               for r in records)


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and *sample* standard deviation (``ddof=1``) of ``values``; std is NaN for one
    value, both are NaN for none."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def _settings(rec: dict) -> Tuple[str, ...]:
    """The record's overrides without the per-seed ones (seed, output_dir)."""
    return tuple(o for o in rec.get("overrides", [])
                 if o.split("=", 1)[0] not in PER_SEED_KEYS)


def latest_ok(records: Iterable[dict]) -> Dict[Tuple[str, str, int], dict]:
    """(part, run, seed) -> the latest successful record of it (later lines win)."""
    return {(r["part"], r["run"], int(r["seed"])): r for r in records if r.get("status") == "ok"}


def aggregate(records: Iterable[dict],
              rows_by_run: Optional[Dict[str, Dict[str, str]]] = None,
              flags_by_run: Optional[Dict[str, dict]] = None) -> Dict[str, List[dict]]:
    """Per part, one row per row label: the successful runs' stage metrics over seeds.

    The latest successful record of each (part, run, seed) counts; failed records never do.
    A run's row labels come from ``rows_by_run[run]`` (the script's current table) when given
    there, else from the record's own ``rows``. Rows come in ``rows_by_run`` order, then in
    order of first appearance. A row whose seeds ran different code or copied stages is
    refused (:func:`quality_provenance.refusal`; ``flags_by_run[run]`` may allow it with
    ``mixed_code_ok`` / ``copies_ok``): it keeps no metric.

    Returns ``{part: [row]}``, a row being ``label``, ``run``, ``stage``, ``n``, ``seeds``,
    ``<metric>`` -> ``(mean, std)`` for each of :data:`METRICS` that every seed has (none when
    refused), ``commits`` (the code labels of the stages the row used, sorted, ``+dirty``
    marked), ``mixed`` (the seeds ran with different overrides apart from seed/output_dir),
    ``refused`` (the refusal line or None) and ``allowed`` (the note of an allowed mix or
    None).
    """
    import quality_provenance as qp

    records = list(records)
    rows_by_run, flags_by_run = rows_by_run or {}, flags_by_run or {}
    prov = qp.provenance(records)
    latest = latest_ok(records)
    groups: Dict[Tuple[str, str, str, str], List[dict]] = {}
    order = {run: i for i, run in enumerate(rows_by_run)}
    for (part, run, _seed), rec in sorted(latest.items(),
                                          key=lambda kv: (order.get(kv[0][1], len(order)),)):
        labels = rows_by_run.get(run, rec.get("rows", {}))
        for stage, label in labels.items():
            if stage in rec.get("stages", {}):
                groups.setdefault((part, label, run, stage), []).append(rec)
    out: Dict[str, List[dict]] = {}
    for (part, label, run, stage), recs in groups.items():
        recs = sorted(recs, key=lambda r: int(r["seed"]))
        refused, allowed = qp.refusal(part, label, run, stage, recs, prov,
                                      flags_by_run.get(run))
        row = {"label": label, "run": run, "stage": stage, "n": len(recs),
               "seeds": [int(r["seed"]) for r in recs],
               "commits": sorted({prov[id(r)][s]["code"] for r in recs
                                  for s in qp.used_stages(stage, list(prov[id(r)]))}),
               "mixed": len({_settings(r) for r in recs}) > 1,
               "hosts": sorted({host_label(r) for r in recs}),
               "refused": refused, "allowed": allowed}
        out.setdefault(part, []).append(row)
        if refused:
            continue
        for m in METRICS:
            vals = [r["stages"][stage].get(m) for r in recs]
            if all(isinstance(v, (int, float)) for v in vals):
                row[m] = mean_std([float(v) for v in vals])
    return out


def _pm(ms: Optional[Tuple[float, float]], digits: int = 4) -> str:
    if ms is None or math.isnan(ms[0]):
        return "-"
    std = "n/a" if math.isnan(ms[1]) else f"{ms[1]:.{digits}f}"
    return f"{ms[0]:.{digits}f} ± {std}"


#: overrides that name where a run reads and writes, not what it computes
PATH_KEYS = ("data.tag_path", "data.part_dir", *PER_SEED_KEYS)


def extra_overrides(rec: dict, defined: Optional[Callable[[str, str], Optional[Sequence[str]]]]
                    ) -> List[str]:
    """The record's overrides that its run's definition does not give (``--set`` ones, or a
    definition changed since the run): ``rec["overrides"]`` minus ``defined(part, run)`` (the
    part's and the run's overrides) and the path/seed keys. Empty without ``defined`` or when
    it knows the run no more (returns None)."""
    known = defined(rec["part"], rec["run"]) if defined else None
    if known is None:
        return []
    known = set(known)
    return [o for o in rec.get("overrides", [])
            if o not in known and o.split("=", 1)[0] not in PATH_KEYS]


def _budgets(records: Sequence[dict], part: str,
             defined: Optional[Callable[[str, str], Optional[Sequence[str]]]] = None
             ) -> List[str]:
    """``"<run>: key=value, ..."`` per distinct budget of the part's successful runs that
    count (the latest of each run and seed), followed by ``"; beyond the run's definition:
    ..."`` when the records carry overrides their run's definition lacks
    (:func:`extra_overrides`: ``--set``, e.g. ``launch.precision=bf16``)."""
    seen = []
    for (rpart, _, _), r in latest_ok(records).items():
        if rpart != part:
            continue
        if r.get("budget"):
            text = f"{r['run']}: " + ", ".join(f"{k}={v}" for k, v in sorted(r["budget"].items()))
            extra = extra_overrides(r, defined)
            text += f"; beyond the run's definition: {', '.join(extra)}" if extra else ""
            if text not in seen:
                seen.append(text)
    return seen


def still_failing(records: Sequence[dict]) -> List[dict]:
    """The latest record of each (part, run, seed) when it is a failure."""
    latest = {(r["part"], r["run"], int(r["seed"])): r for r in records}
    return [r for r in latest.values() if r.get("status") != "ok"]


def format_markdown(records: Sequence[dict], agg: Dict[str, List[dict]],
                    seeds_asked: Optional[int] = None,
                    f1_parts: Sequence[str] = ("arxiv", "arxiv_random"),
                    defined: Optional[Callable[[str, str], Optional[Sequence[str]]]] = None
                    ) -> str:
    """``QUALITY.md``: a header (budget, hardware, statistics, partial rows), then per part a
    table with one row per label: val/test accuracy (and macro-F1 for ``f1_parts``) as
    ``mean ± sample std``, seeds, mean stage time, commits. A row with fewer seeds than
    ``seeds_asked`` (default: the most any row of that part has) is marked *partial*.
    ``defined(part, run)``: the overrides a run's definition gives (the budget lines then name
    any a record has beyond them, :func:`extra_overrides`)."""
    hosts = sorted({f"{h.get('cpus', '?')}-core CPU ({h.get('machine', '?')}"
                    + (f", {h['cpu']}, bf16 on {h['bf16']}" if "bf16" in h else "") + ")"
                    for h in (r.get("host") for r in records) if h})
    failed = sum(r.get("status") != "ok" for r in records)
    lines = ["# Quality benchmark (LM-GNN Table 1 style)", "",
             "Written by `python benchmarks/bench_quality.py --report` from "
             "`quality_runs.jsonl` alone.", "",
             f"- Hardware: {', '.join(hosts) or 'unknown'}; CPU only, 2 loopback machines x "
             "1 trainer unless the budget says otherwise.",
             "- Numbers: mean ± **sample** standard deviation (ddof=1) over seeds; `n/a` with "
             "one seed. Time: mean seconds of the stage that gives the row.",
             "- A row with fewer seeds than asked is **partial** (marked); `mixed` marks a row "
             "whose seeds ran with different overrides.",
             "- A row whose seeds ran different code (a different commit, or a dirty tree or "
             "unknown commit with two or more seeds, in any stage the row used) or used copied "
             "stages is **refused**: no mean, one line naming its seeds and their code, unless "
             "its run's definition says why it may (`mixed_code_ok` / `copies_ok`). `commits`: "
             "the code of the stages the row used, and the CPU's bf16 units where the records "
             "say (`amx`, `avx512_bf16`, `none`: runs are bit-reproducible on one kind only; "
             "a paired seed needs both records on the same kind).",
             f"- Failed attempts recorded (never aggregated): {failed}."]
    lines += [f"  - still failing: {r['part']}/{r['run']}/seed{r['seed']} (exit {r.get('rc')}, "
              f"log {r.get('log')})" for r in still_failing(records)]
    lines.append("")
    for part, rows in agg.items():
        asked = seeds_asked or max(r["n"] for r in rows)
        f1 = part in f1_parts
        lines += [f"## {part}", ""]
        lines += [f"- budget of {b}" for b in _budgets(records, part, defined)] + [""]
        head = ["row", "val acc", "test acc"] + (["val macro-F1", "test macro-F1"] if f1 else [])
        head += ["seeds", "stage time (s)", "commits"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            n = f"{r['n']}/{asked}" + (" partial" if r["n"] < asked else "")
            n += " mixed" if r["mixed"] else ""
            cells = [r["label"], _pm(r.get("val_acc")), _pm(r.get("test_acc"))]
            cells += [_pm(r.get("val_macro_f1")), _pm(r.get("test_macro_f1"))] if f1 else []
            if r.get("refused"):
                cells[1:] = ["refused (below)"] * (len(cells) - 1)
            secs = r.get("seconds")
            cpus = [h for h in r.get("hosts", []) if h != "unknown"]
            cells += [n, f"{secs[0]:.1f}" if secs else "-", ", ".join(r["commits"])
                      + (f" on {' + '.join(r['hosts'])}" if cpus else "")]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"- {r['refused']}" for r in rows if r.get("refused")]
        lines += [f"- {r['allowed']}" for r in rows if r.get("allowed")]
        lines += [""] if any(r.get("refused") or r.get("allowed") for r in rows) else []
    if not agg:
        lines.append("No successful runs recorded yet.")
    return "\n".join(lines) + "\n"
