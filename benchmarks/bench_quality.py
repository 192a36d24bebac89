"""Quality benchmark in the style of LM-GNN's Table 1 (issue 12): resumable, one line per run.

It only orchestrates ``python -m lmgnn_dist.drivers.pipeline --config YAML KEY=VALUE ...`` runs and
reads each run's ``<output_dir>/results.json``. A run = (part, run name, seed, overrides); its
stages map to table rows (:data:`quality_defs.RUNS`). Each finished run appends one JSON line to
``benchmarks/quality_runs.jsonl``; a run already recorded there with the same overrides is
skipped (``--force`` reruns it, afresh). A failed run is recorded with its exit code and the
path of its console log, and the harness goes on. A record keeps per stage its metrics, the
code that trained it, where a copied stage came from, and its per-node test correctness
(:mod:`quality_record`). ``--report`` writes ``QUALITY.md`` and ``quality.png`` from the JSON
lines alone: the rows over seeds (:mod:`quality_report`; a row mixing code or copied stages is
refused, :mod:`quality_provenance`), the paired differences with their intervals and minimum
detectable differences (:mod:`quality_paired`, :mod:`quality_stats`) and the picture
(:mod:`quality_plot`). What runs, and what may be claimed from it: ``PROTOCOL.md``.

Parts (data sets), converted once into a TAG folder when it is missing:

- ``arxiv``: arXiv-2023 (``../shared/data/arxiv_2023``), titles only, fixed split,
  ``data.max_seq_len=32``. With the MiniLM tokenizer ([CLS] + title + [SEP]) titles are
  median 14, p95 22, p99 27, max 47 tokens: 32 truncates 49 of 33,868 titles (0.14%), so 32
  (the smaller of 32/48 under 5%) it is.
- ``cora``: ``examples/cora/tag`` (random 60/20/20 split), ``data.max_seq_len=128``.
- ``cora_low``: Cora with the low-label split (20 per class / 500 val / 1000 test, seed 0).

All runs of a part share one partition folder ``<out-root>/<part>/parts``; the partitioner's
fingerprint includes the seed, so runs go seed by seed (one re-partition per seed change).

    python benchmarks/bench_quality.py --part arxiv --seeds 0 1 [--runs pipeline ...]
        [--dry-run] [--force] [--set KEY=VALUE ...] [--out-root DIR]
    python benchmarks/bench_quality.py --report [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import quality_paired as qpair  # noqa: E402
import quality_plot  # noqa: E402
import quality_policies as qpol  # noqa: E402
import quality_report as qr  # noqa: E402
import quality_targets as qt  # noqa: E402
from quality_defs import PARTS, RUNS, defined_overrides, run_budget  # noqa: E402  (runs, parts)
from quality_record import (COST_KEYS, OUTPUTS, budget, host_info, reuse_stages,  # noqa: E402,F401
                            stage_entry)

sys.path.insert(0, str(REPO))
from lmgnn_dist.run.folder import claim  # noqa: E402

DEFAULT_ROOT = Path("work/quality")  # relative to the repository (portable records)
LOG_TAIL = 20


def log(msg: str) -> None:
    """One progress line, flushed."""
    print(f"[bench_quality {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_overrides(part: str, run: str, seed: int, root: Path, extra: List[str]) -> List[str]:
    """The exact ``KEY=VALUE`` list of a run: the part's data, output/partition folders and
    seed, the run's own, its budget (:func:`quality_defs.run_budget`), then ``extra``
    (``--set``; later ones win). A run
    with ``extra`` gets its own output folder ``<run>+<hash of extra>`` (else the pipeline
    would resume the plain run's finished stages)."""
    p = PARTS[part]
    folder = run if not extra else "{}+{}".format(
        run, hashlib.sha1(" ".join(extra).encode()).hexdigest()[:8])
    return [f"data.tag_path={p['tag']}", f"data.part_dir={root / part / 'parts'}",
            *p["data"], f"output_dir={root / part / folder / f'seed{seed}'}", f"seed={seed}",
            *RUNS[run]["overrides"], *run_budget(part, run), *extra]


def command(part: str, overrides: List[str]) -> List[str]:
    """The pipeline command line of a run (run from the repository root)."""
    return [sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config", PARTS[part]["config"],
            *overrides]


def ensure_tag(part: str, dry_run: bool) -> None:
    """Convert the part's data set into its TAG folder once (when the folder is missing)."""
    p = PARTS[part]
    if p["convert"] is None or (REPO / p["tag"] / "metadata.json").exists():
        return
    cmd = [sys.executable, *p["convert"]]
    log(f"convert {part}: {' '.join(cmd)}")
    if not dry_run:
        subprocess.run(cmd, cwd=REPO, check=True)


def git_state() -> Tuple[str, bool]:
    """``git rev-parse --short HEAD`` and whether tracked files other than :data:`OUTPUTS`
    differ from it."""
    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return git("rev-parse", "--short", "HEAD") or "unknown", bool(
        git("status", "--porcelain", "--untracked-files=no", "--", ".",
            *(f":!{o}" for o in OUTPUTS)))


def execute(part: str, run: str, seed: int, overrides: List[str], force: bool) -> dict:
    """Run one pipeline job (console output to ``<output_dir>/logs/bench_console.log``) and
    return its record (:mod:`quality_report`)."""
    out_dir = REPO / next(o for o in overrides if o.startswith("output_dir="))[len("output_dir="):]
    if force and out_dir.exists():
        shutil.rmtree(out_dir)  # --force: no checkpoint of an earlier try is reused
    claim(str(out_dir))  # the harness's own run folder (its log goes into logs/)
    base = RUNS[run].get("reuse")
    reused = reuse_stages(out_dir.parent.parent / base / out_dir.name, out_dir) if base else []
    console = out_dir / "logs" / "bench_console.log"
    console.parent.mkdir(exist_ok=True)
    commit, dirty = git_state()
    rec = {"part": part, "run": run, "seed": seed, "overrides": overrides, "commit": commit,
           "dirty": dirty, "rows": RUNS[run]["rows"], "config": PARTS[part]["config"],
           "host": host_info(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "reused": {"run": base, "stages": reused} if reused else None}
    t0 = time.time()
    with open(console, "w") as f:
        rc = subprocess.run(command(part, overrides), cwd=REPO, stdout=f,
                            stderr=subprocess.STDOUT).returncode
    rec["harness_wall_s"] = round(time.time() - t0, 1)
    res_path = out_dir / "results.json"
    if rc == 0 and res_path.exists():
        res = json.loads(res_path.read_text())
        rec.update(status="ok", wall_s=res.get("wall_s"), stages={
            s: stage_entry(out_dir / s, met, qr.METRICS + COST_KEYS)
            for s, met in res.get("stages", {}).items()},
            budget=budget(res))
    else:
        tail = console.read_text(errors="replace").splitlines()[-LOG_TAIL:]
        rec.update(status="failed", rc=rc if rc else "no results.json", log=str(console),
                   log_tail=tail[-5:])
    return rec


def run_all(args) -> int:
    """Run (or print, ``--dry-run``) every asked (part, seed, run) not yet recorded."""
    root = Path(args.out_root).resolve() if args.out_root else DEFAULT_ROOT
    jsonl = Path(args.jsonl)
    records = qr.read_records(jsonl)
    commit, dirty = git_state()
    failures = 0
    for part in args.part:
        ensure_tag(part, args.dry_run)
        for seed in args.seeds:
            for run in args.runs:
                ov = run_overrides(part, run, seed, root, args.set)
                name = f"{part}/{run}/seed{seed}"
                if not args.force and qr.is_done(records, part, run, seed, ov,
                                                 None if dirty else commit):
                    log(f"skip {name} (recorded at {commit} in {jsonl})")
                    continue
                if args.dry_run:
                    print(" ".join(command(part, ov)))
                    continue
                log(f"start {name}")
                rec = execute(part, run, seed, ov, args.force)
                qr.append_record(jsonl, rec)
                records.append(rec)
                if rec["status"] == "ok":
                    accs = ", ".join(f"{s} test_acc {m['test_acc']:.4f}"
                                     for s, m in rec["stages"].items() if "test_acc" in m)
                    log(f"done  {name} in {rec['harness_wall_s']:.0f}s: {accs}")
                else:
                    failures += 1
                    log(f"FAILED {name} (exit {rec['rc']}) after {rec['harness_wall_s']:.0f}s; "
                        f"log: {rec['log']}")
    return 1 if failures else 0


def report(args) -> int:
    """Write QUALITY.md and quality.png from the JSON lines alone, and the stage-3 policy
    table into RESULTS.md's marked section (:mod:`quality_policies`); print one line per
    refused row (and per row aggregated only because its run allows it)."""
    records = qr.read_records(args.jsonl)
    agg = qr.aggregate(records, {k: v["rows"] for k, v in RUNS.items()}, RUNS)
    for row in (r for rows in agg.values() for r in rows):
        for line in (row["refused"], row["allowed"]):
            if line:
                print(line, flush=True)
    sizes = qpair.test_set_sizes(records, {p: v["test_nodes"] for p, v in PARTS.items()})
    paired = qpair.paired(records, agg, RUNS, {p: n for p, (n, _) in sizes.items()})
    asked = len(args.seeds) if args.seeds_given else None
    text = qr.format_markdown(records, agg, asked, defined=defined_overrides)
    text += "\n".join(qpair.markdown(paired, {p: sizes[p] for p in agg if p in sizes})) + "\n"
    text += "\n".join(qt.markdown(qt.check(agg, asked, paired=paired))) + "\n"
    policies = qpol.table(records, agg, paired)
    if policies:  # issue 25 item 5: also RESULTS.md's marked section
        text += "\n## Stage 3 input policies (issue 25)\n\n" + "\n".join(policies) + "\n"
        qpol.write_section(args.results, policies)
    notes = Path(args.md).with_name("QUALITY_notes.md")
    if notes.exists():  # hand-written: what was tried, caveats of individual runs
        text += "\n" + notes.read_text()
    md = qr.write_atomic(args.md, text)
    png = quality_plot.plot(agg, paired, args.png)
    log(f"report: {md}, {png} ({len(records)} records)")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", nargs="+", choices=list(PARTS), default=[])
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides appended to every run (they win; part of the run's key)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--force", action="store_true", help="rerun runs already recorded")
    p.add_argument("--report", action="store_true", help="write QUALITY.md and quality.png")
    p.add_argument("--out-root", help="put run outputs, partitions, the jsonl, QUALITY.md, "
                   "quality.png and RESULTS.md here (default: work/quality and benchmarks/)")
    args = p.parse_args(argv)
    bench = Path(args.out_root).resolve() if args.out_root else REPO / "benchmarks"
    args.jsonl, args.md, args.png, args.results = (
        bench / "quality_runs.jsonl", bench / "QUALITY.md", bench / "quality.png",
        bench / "RESULTS.md")
    args.seeds_given = args.seeds is not None
    args.seeds = args.seeds if args.seeds is not None else [0]
    if args.report:
        return report(args)
    if not args.part:
        p.error("--part is required (or --report)")
    bad = [s for s in args.set if "=" not in s]
    if bad:
        p.error(f"--set takes KEY=VALUE, got {bad}")
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
