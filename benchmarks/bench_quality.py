"""Quality benchmark in the style of LM-GNN's Table 1 (issue 12): resumable, one line per run.

It only orchestrates ``python -m lmgnn_dist.drivers.pipeline --config YAML KEY=VALUE ...`` runs and
reads each run's ``<output_dir>/results.json``. A run = (part, run name, seed, overrides); its
stages map to table rows (:data:`RUNS`). Each finished run appends one JSON line to
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
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import quality_paired as qpair  # noqa: E402
import quality_plot  # noqa: E402
import quality_policies as qpol  # noqa: E402
import quality_report as qr  # noqa: E402
import quality_targets as qt  # noqa: E402
from quality_record import (COST_KEYS, OUTPUTS, budget, host_info, reuse_stages,  # noqa: E402,F401
                            stage_entry)

sys.path.insert(0, str(REPO))
from lmgnn_dist.run.folder import claim  # noqa: E402

#: run name -> overrides and rows (stage name -> row label); edit freely, labels are
#: presentation (the report uses this table's labels for the runs it names). ``reuse``: copy
#: the checkpoints of the stages before stage 3 from that run of the same part and seed when
#: it has them (the pipeline then skips those stages: such runs set ``resume=true``, which
#: ``examples/cora/pipeline.yaml`` turns off), so a stage-3 variant costs stage 3 only.
#: ``base`` (default: ``reuse``): the run this one is a variant of (paired "variant - base"
#: differences, :mod:`quality_paired`). ``mixed_code_ok`` / ``copies_ok``: why ``--report``
#: may aggregate this run's rows although their seeds ran different code / copied stages
#: (:mod:`quality_provenance`; without them such rows are refused)
RUNS: Dict[str, dict] = {
    "pipeline": {
        "overrides": ["stages=[1,2,3]", "baseline=true", "stage1.objective=task"],
        "rows": {"stage1": "LM-only fine-tune (MLP head)", "baseline": "frozen LM + RGCN",
                 "stage2": "task-tuned LM + RGCN (stage 2)", "stage3": "full pipeline (stage 3)"},
    },
    "joint_pretrained": {  # fp32: launch.precision's default until 7 Dec 2026 (now auto)
        "overrides": ["stages=[2,3]", "baseline=false", "launch.precision=fp32"],
        "rows": {"stage2": "frozen LM + RGCN (stage 2 of the joint run)",
                 "stage3": "joint fine-tune from pre-trained LM"},
    },
    "joint_pretrained_bf16": {  # issue 25: the same run with every LM pass in bf16 autocast
        "overrides": ["stages=[2,3]", "baseline=false", "launch.precision=bf16"],
        "base": "joint_pretrained",
        "rows": {"stage2": "frozen LM + RGCN (stage 2 of the joint run), LM in bf16",
                 "stage3": "joint fine-tune from pre-trained LM, LM in bf16"},
    },
    "joint_head_regime": {  # issue 22 item 4: the bf16 joint run's stage 3 again, the head in
        # its stage-2 regime (stage 2's lr and weight decay) and each group clipped on its own
        "overrides": ["stages=[2,3]", "baseline=false", "resume=true", "launch.precision=bf16",
                      "stage3.gnn_lr=1e-3", "stage3.head_weight_decay=5e-4",
                      "stage3.clip_per_group=true"],
        "reuse": "joint_pretrained_bf16",
        "copies_ok": "by design: stage 3 starts from the bf16 joint run's stage 2 of the same "
                     "seed (reuse), so joint_head_regime - joint_pretrained_bf16 compares "
                     "stage 3 alone",
        "rows": {"stage3": "joint fine-tune, LM in bf16, head in its stage-2 regime, "
                           "per-group clipping"},
    },
    "joint_lm_aux": {  # issue 22 item 4: joint_head_regime + the auxiliary LM classifier
        "overrides": ["stages=[2,3]", "baseline=false", "resume=true", "launch.precision=bf16",
                      "stage3.gnn_lr=1e-3", "stage3.head_weight_decay=5e-4",
                      "stage3.clip_per_group=true", "stage3.lm_aux_weight=1.0"],
        "reuse": "joint_pretrained_bf16", "base": "joint_head_regime",
        "copies_ok": "by design: stage 3 starts from the bf16 joint run's stage 2 of the same "
                     "seed (reuse), so joint_lm_aux - joint_head_regime compares stage 3 alone",
        "rows": {"stage3": "joint fine-tune, LM in bf16, head in its stage-2 regime, "
                           "per-group clipping, auxiliary LM classifier (weight 1)"},
    },
    "joint_pretrained_bf16_mean": {  # issue 22 items 1-2: the bf16 joint run with the LM's
        # own pooling (all-MiniLM-L6-v2: mean over real tokens), frozen RGCN and stage 3 alike;
        # make demo's recipe since it met PROTOCOL.md's adoption rule on Cora (5 seeds)
        "overrides": ["stages=[2,3]", "baseline=false", "launch.precision=bf16",
                      "model.pooling=mean"],
        "base": "joint_pretrained_bf16",
        "rows": {"stage2": "frozen LM + RGCN (stage 2 of the joint run), LM in bf16, mean "
                           "pooling",
                 "stage3": "joint fine-tune from pre-trained LM, LM in bf16, mean pooling"},
    },
    "joint_lm_only_bf16": {  # issue 25 item 5's LM-only floor: stage 3 with mode lm_only
        # (the LM + an MLP head on the targets, no graph) at the bf16 joint run's budget
        "overrides": ["stages=[2,3]", "baseline=false", "resume=true", "launch.precision=bf16",
                      "stage3.mode=lm_only"],
        "reuse": "joint_pretrained_bf16",
        "copies_ok": "by design: the bf16 joint run's stage 2 of the same seed is copied so "
                     "that only stage 3 runs; lm_only does not read it",
        "rows": {"stage3": "LM-only fine-tune (MLP head), LM in bf16, the joint run's stage-3 "
                           "budget"},
    },
    "joint_fresh_inputs": {  # issues 22 item 4 / 25 item 5: the bf16 joint run's stage 3
        # again, every input node that gets no gradient re-encoded (no grad) with the current
        # LM at each step instead of read from the stage-2 cache: no stale neighbours
        "overrides": ["stages=[2,3]", "baseline=false", "resume=true", "launch.precision=bf16",
                      "stage3.inference_source=encode"],
        "reuse": "joint_pretrained_bf16",
        "copies_ok": "by design: stage 3 starts from the bf16 joint run's stage 2 of the same "
                     "seed (reuse), so joint_fresh_inputs - joint_pretrained_bf16 compares "
                     "stage 3's input policy alone",
        "rows": {"stage3": "joint fine-tune, LM in bf16, neighbours re-encoded every step"},
    },
    "joint_bounded_staleness": {  # issues 22 item 4 / 25 item 5: the cache, but a row written
        # more than 8 steps ago is re-encoded when read, and LEADING's refresh pipeline
        # re-encodes 64 random nodes per trainer per step (settings fixed before any run)
        "overrides": ["stages=[2,3]", "baseline=false", "resume=true", "launch.precision=bf16",
                      "stage3.cache_max_staleness=8", "stage3.refresh_batch_size=64"],
        "reuse": "joint_pretrained_bf16",
        "copies_ok": "by design: stage 3 starts from the bf16 joint run's stage 2 of the same "
                     "seed (reuse), so joint_bounded_staleness - joint_pretrained_bf16 compares "
                     "stage 3's input policy alone",
        "rows": {"stage3": "joint fine-tune, LM in bf16, cache rows at most 8 steps old + "
                           "refresh 64/step"},
    },
    "frozen_bf16": {  # issue 22 items 1-2 on arXiv: stage 2 alone (the frozen LM + RGCN),
        # [CLS] pinned, every LM pass in bf16: the pooling comparison's base
        "overrides": ["stages=[2]", "baseline=false", "launch.precision=bf16",
                      "model.pooling=cls"],
        "rows": {"stage2": "frozen LM + RGCN ([CLS]), LM in bf16"},
    },
    "frozen_bf16_mean": {  # the same with the LM's own pooling (mean over real tokens)
        "overrides": ["stages=[2]", "baseline=false", "launch.precision=bf16",
                      "model.pooling=mean"],
        "base": "frozen_bf16",
        "rows": {"stage2": "frozen LM + RGCN, mean pooling, LM in bf16"},
    },
    "frozen_fp32": {  # the frozen_bf16 pair in fp32, for hosts without bf16 units (AVX2 only:
        # bf16 autocast there runs ~25x slower than fp32, measured 2026-12-06)
        "overrides": ["stages=[2]", "baseline=false", "launch.precision=fp32",
                      "model.pooling=cls"],
        "rows": {"stage2": "frozen LM + RGCN ([CLS]), LM in fp32"},
    },
    "frozen_fp32_mean": {
        "overrides": ["stages=[2]", "baseline=false", "launch.precision=fp32",
                      "model.pooling=mean"],
        "base": "frozen_fp32",
        "rows": {"stage2": "frozen LM + RGCN, mean pooling, LM in fp32"},
    },
    "frozen_fp32_auto": {  # model.pooling=auto: what all-MiniLM-L6-v2's folder declares,
        # mean + L2 normalisation; its base is mean alone, so the pair isolates the normalising
        "overrides": ["stages=[2]", "baseline=false", "launch.precision=fp32",
                      "model.pooling=auto"],
        "base": "frozen_fp32_mean",
        "rows": {"stage2": "frozen LM + RGCN, pooling auto (mean + L2 normalise), LM in fp32"},
    },
    "joint_glem": {  # issues 22 item 4 / 25 item 5: stage 3 as GLEM's alternation from the
        # bf16 joint run's stage 2 -- 2 rounds of (LM 1 epoch of gold targets + as many of the
        # GNN's pseudo-labels at weight 0.5, re-encode, fresh GNN 30 epochs on gold + the LM's
        # pseudo-labels): 2 gold epochs of LM training, the joint run's budget (settings
        # fixed before any run)
        "overrides": ["stages=[2,3]", "baseline=false", "resume=true", "launch.precision=bf16",
                      "stage3.mode=glem", "stage3.glem_rounds=2", "stage3.epochs=1",
                      "stage3.pseudo_label_weight=0.5", "stage3.pseudo_label_ratio=1.0"],
        "reuse": "joint_pretrained_bf16",
        "copies_ok": "by design: stage 3 starts from the bf16 joint run's stage 2 of the same "
                     "seed (reuse), so joint_glem - joint_pretrained_bf16 compares stage 3 "
                     "alone",
        "rows": {"stage3": "GLEM rounds (LM and GNN on each other's pseudo-labels), LM in "
                           "bf16"},
    },
    "pipeline_pseudo": {  # the pipeline's stage 3 again, with GLEM's pseudo-labels
        "overrides": ["stages=[1,2,3]", "baseline=true", "stage1.objective=task", "resume=true",
                      "stage3.pseudo_label_weight=1.0", "stage3.pseudo_label_ratio=1.0"],
        "reuse": "pipeline",
        "copies_ok": "by design: stage 3 starts from the pipeline run's stages of the same "
                     "seed (reuse), so pipeline_pseudo - pipeline compares stage 3 alone",
        "rows": {"stage3": "full pipeline, stage 3 with pseudo-labels (GLEM)"},
    },
    "joint_longer": {  # the joint run's stage 3 again: 2 epochs at a larger LM rate
        "overrides": ["stages=[2,3]", "baseline=false", "resume=true", "stage3.epochs=2",
                      "stage3.lm_lr=5e-5"],
        "reuse": "joint_pretrained",
        "copies_ok": "by design: stage 3 starts from the joint run's stage 2 of the same seed "
                     "(reuse), so joint_longer - joint_pretrained compares stage 3 alone",
        "rows": {"stage3": "joint fine-tune from pre-trained LM, 2 epochs, LM lr 5e-5"},
    },
    "pipeline_lp": {
        "overrides": ["stages=[1,2,3]", "baseline=false", "stage1.objective=link_prediction",
                      "stage1.epochs=null", "stage1.max_steps=40", "stage1.batch_size=8",
                      "stage1.lm_lr=2e-5", "stage1.decoder_lr=1e-2"],
        "base": "pipeline",
        "rows": {"stage2": "LP-tuned LM + RGCN (stage 2)", "stage3": "full pipeline, LP stage 1"},
    },
}

#: part -> base config, TAG folder, how to make it (None: it is in the repo), its data
#: overrides, its budget overrides (stage epochs/steps ...; empty: the config's) and its
#: test-set size (for the per-node MDD of records without per-node predictions, which carry
#: their own count: arXiv-2023 split/test.csv.gz 668, its random split 6,775,
#: examples/cora/tag 543, low-label 1000)
PARTS: Dict[str, dict] = {
    "arxiv": {
        "config": "examples/arxiv2023/pipeline.yaml", "tag": "work/quality/arxiv23/tag",
        "convert": ["-m", "partition.converters.arxiv2023", "--src", "../shared/data/arxiv_2023",
                    "--out", "work/quality/arxiv23/tag"],
        "data": ["data.graph_name=arxiv2023", "data.max_seq_len=32"],
        "budget": [], "test_nodes": 668,
    },
    "arxiv_random": {  # issue 21 item 3: a seeded random 60/20/20 of all 33,868 labelled
        # nodes (6,775 test: one accuracy's standard error ~0.56 points, the time split's ~1.8)
        "config": "examples/arxiv2023/pipeline.yaml", "tag": "work/quality/arxiv23_random/tag",
        "convert": ["-m", "partition.converters.arxiv2023", "--src", "../shared/data/arxiv_2023",
                    "--out", "work/quality/arxiv23_random/tag", "--split", "random",
                    "--seed", "0"],
        "data": ["data.graph_name=arxiv2023r", "data.max_seq_len=32"],
        "budget": [], "test_nodes": 6775,
    },
    "cora": {
        "config": "examples/cora/pipeline.yaml", "tag": "examples/cora/tag", "convert": None,
        # [CLS], what every Cora row ran before the example (make demo) took mean pooling;
        # joint_pretrained_bf16_mean is make demo's recipe since then
        "data": ["data.graph_name=cora", "data.max_seq_len=128", "model.pooling=cls"],
        "budget": [], "test_nodes": 543,
    },
    "cora_low": {
        "config": "examples/cora/pipeline.yaml", "tag": "work/quality/cora_low/tag",
        "convert": ["-m", "partition.converters.tape", "--pt", "../shared/data/cora_tag/cora.pt",
                    "--out", "work/quality/cora_low/tag", "--classes", "cora",
                    "--split", "low_label", "--seed", "0"],
        "data": ["data.graph_name=cora_low", "data.max_seq_len=128", "model.pooling=cls"],
        "budget": ["stage1.epochs=10", "stage3.epochs=8", "stage3.eval_every=12"],
        "test_nodes": 1000,
        # 140 training nodes = 3 batches of 32 per trainer: epochs are tiny, so more of them
        # (stage 1 LM-only: 30 steps; stage 3: 24 steps, validated after 12 and 24)
    },
}

DEFAULT_ROOT = Path("work/quality")  # relative to the repository (portable records)
LOG_TAIL = 20


def log(msg: str) -> None:
    """One progress line, flushed."""
    print(f"[bench_quality {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_overrides(part: str, run: str, seed: int, root: Path, extra: List[str]) -> List[str]:
    """The exact ``KEY=VALUE`` list of a run: the part's data, output/partition folders and
    seed, the run's own, the part's budget, then ``extra`` (``--set``; later ones win). A run
    with ``extra`` gets its own output folder ``<run>+<hash of extra>`` (else the pipeline
    would resume the plain run's finished stages)."""
    p = PARTS[part]
    folder = run if not extra else "{}+{}".format(
        run, hashlib.sha1(" ".join(extra).encode()).hexdigest()[:8])
    return [f"data.tag_path={p['tag']}", f"data.part_dir={root / part / 'parts'}",
            *p["data"], f"output_dir={root / part / folder / f'seed{seed}'}", f"seed={seed}",
            *RUNS[run]["overrides"], *p["budget"], *extra]


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
    text = qr.format_markdown(records, agg, asked)
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
