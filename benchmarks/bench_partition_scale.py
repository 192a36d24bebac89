"""Partitioning at scale: a synthetic power-law TAG (1M nodes / 10M edges by default) into 4
parts with METIS and with random assignment; prints wall time and peak RSS of each step.

``python benchmarks/bench_partition_scale.py [--nodes 1000000 --edges 10000000]
[--results-md benchmarks/RESULTS.md]``

Each method runs ``python -m partition`` in a fresh process, so each peak RSS is that
process's own (``ru_maxrss`` after each step, as recorded in ``lmgnn_meta.json``).
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
from gen_synthetic_tag import generate  # noqa: E402
from report import emit  # noqa: E402

STEPS = ("read", "tokenize", "build", "partition")


def run_method(tag: Path, out: Path, method: str, parts: int, max_seq_len: int) -> dict:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "partition", "--tag", str(tag), "--out", str(out),
                           "--num-parts", str(parts), "--method", method,
                           "--max-seq-len", str(max_seq_len), "--graph-name", "synth"],
                          cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"partition ({method}) failed:\n{proc.stderr[-3000:]}")
    times = json.loads((out / "lmgnn_meta.json").read_text())["times"]
    times["total_s"] = time.time() - t0
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=1_000_000)
    p.add_argument("--edges", type=int, default=10_000_000)
    p.add_argument("--parts", type=int, default=4)
    p.add_argument("--max-seq-len", type=int, default=32)
    p.add_argument("--work", default="work/scale")
    p.add_argument("--results-md", default=None)
    args = p.parse_args(argv)
    work = Path(args.work)
    tag = work / "tag"
    gen = generate(args.nodes, args.edges, tag)
    lines = [f"synthetic TAG: {gen['nodes']:,} nodes, {gen['edges']:,} edges, generated in "
             f"{gen['seconds']:.0f}s; {args.parts} parts, max_seq_len {args.max_seq_len}",
             f"{'method':8s} " + " ".join(f"{s + ' s':>11s} {s + ' MiB':>13s}" for s in STEPS)
             + f" {'total s':>8s}"]
    for method in ("metis", "random"):
        t = run_method(tag, work / f"parts_{method}", method, args.parts, args.max_seq_len)
        lines.append(f"{method:8s} " + " ".join(
            f"{t[s + '_s']:11.1f} {t[s + '_peak_rss_mb']:13.0f}" for s in STEPS)
            + f" {t['total_s']:8.1f}")
    emit("\n".join(lines), args.results_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
