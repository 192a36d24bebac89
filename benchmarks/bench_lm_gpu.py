"""Benchmark: the LM encoder (``lmgnn_dist.model.lm.LMEncoder``) on a device, DGL-free.

For each precision (fp32, bf16) and sequence length (128, 512), and a sweep of batch sizes
(stopping at the first that runs out of memory):

- **encode**: no-grad [CLS] encoding (``LMEncoder.encode_no_grad``: eval mode, sub-batches),
  sequences/s;
- **train step**: forward with gradient + backward + AdamW step (what stage 1/3 do per
  with-gradient node), sequences/s, with and without gradient checkpointing;

each with the peak GPU memory (``torch.cuda.max_memory_allocated``, MiB). The LM is
all-MiniLM-L6-v2's architecture (BERT, 6 layers, 384 wide, 12 heads) with random weights:
throughput does not depend on the weights, and no model hub is needed. Median of
``--repeats`` timed runs after one warm-up. Usage::

    python benchmarks/bench_lm_gpu.py --device cuda --out lm_gpu.json
    python benchmarks/bench_lm_gpu.py --device cpu --lengths 128 --batches 8 --repeats 2  # smoke
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmgnn_dist.device import DevicePlan  # noqa: E402  (torch only)
from lmgnn_dist.model.lm import LMEncoder  # noqa: E402  (torch + transformers only)


def minilm_folder(root: Path) -> Path:
    """A MiniLM-shaped BertModel with random weights, saved HF-style (no tokenizer needed)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                     num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(root)
    return root


def tokens(batch: int, length: int) -> torch.Tensor:
    ids = torch.randint(1000, 30000, (batch, length))
    ids[:, 0], ids[:, -1] = 101, 102
    return ids


def timed(fn, repeats: int, device: torch.device) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(folder: Path, plan: DevicePlan, mode: str, length: int, batch: int, repeats: int,
            checkpointing: bool = False) -> dict:
    lm = LMEncoder(str(folder), pad_token_id=0, device=plan,
                   gradient_checkpointing=checkpointing)
    ids = tokens(batch, length)
    if plan.lm.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(plan.lm)
    if mode == "encode":
        def fn():
            lm.encode_no_grad(ids, batch_size=batch)
    else:
        opt = torch.optim.AdamW(lm.parameters(), lr=1e-5)
        lm.set_dropout(False)

        def fn():
            opt.zero_grad()
            lm(ids).pow(2).mean().backward()
            opt.step()
    seconds = timed(fn, repeats, plan.lm)
    peak = (torch.cuda.max_memory_allocated(plan.lm) / 2**20 if plan.lm.type == "cuda"
            else None)
    return {"mode": mode + (" + grad ckpt" if checkpointing else ""), "precision": plan.precision,
            "seq_len": length, "batch": batch, "seq_per_s": batch / seconds,
            "peak_gpu_mem_mib": peak}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--lengths", default="128,512")
    p.add_argument("--batches", default="64,256,1024",
                   help="batch sizes to sweep (each mode stops at the first out-of-memory)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = minilm_folder(Path(tmp))
        for precision in args.precisions.split(","):
            plan = DevicePlan(device, torch.device("cpu"), precision)
            for length in (int(x) for x in args.lengths.split(",")):
                for mode, ckpt in (("encode", False), ("train step", False), ("train step", True)):
                    for batch in (int(x) for x in args.batches.split(",")):
                        try:
                            row = measure(folder, plan, mode, length, batch, args.repeats, ckpt)
                        except torch.cuda.OutOfMemoryError:
                            print(f"{precision} L={length} {mode} batch {batch}: out of memory",
                                  flush=True)
                            break
                        rows.append(row)
                        mem = (f"{row['peak_gpu_mem_mib']:8.0f} MiB"
                               if row["peak_gpu_mem_mib"] is not None else "")
                        print(f"{precision:5s} L={length:4d} {row['mode']:22s} batch {batch:5d} "
                              f"{row['seq_per_s']:10.1f} seq/s {mem}", flush=True)
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "transformers": __import__("transformers").__version__}
    print(json.dumps(meta))
    if args.out:
        Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
