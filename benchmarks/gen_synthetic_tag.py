"""Generate a synthetic power-law TAG (Parquet, the project's format) for scale benchmarks.

``python benchmarks/gen_synthetic_tag.py --nodes 1000000 --edges 10000000 --out work/synth``

One node type ``item`` with short texts (6-13 words from a 64-word vocabulary, so every text
tokenises to a handful of word pieces), a label in 10 classes and a seeded 60/20/20 split; one
relation ``item__links__item``. Sources are uniform; destinations are ``perm[floor(N * u**3)]``
for uniform ``u`` and a random permutation ``perm``, so in-degrees are heavy-tailed
(P(rank r) ~ r^(-2/3)) while high-degree nodes are spread over the id range. Self loops are
kept out; duplicate edges may occur (as in real data).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from partition.atomic import write_json_atomic, write_parquet_atomic  # noqa: E402
from partition.tag_write import random_split, split_strings  # noqa: E402

WORDS = ("graph node edge text model train layer neural token embed sample batch partition "
         "server trainer cache stale fresh degree power law random metis split label class "
         "query paper product author topic citation review answer question user tag comment "
         "vector matrix tensor kernel block sparse dense attention encoder decoder loss "
         "gradient optimizer epoch step memory time wall speed scale million").split()


def generate(num_nodes: int, num_edges: int, out: Path, seed: int = 0, chunk: int = 1_000_000):
    """Write the TAG folder; returns ``{"nodes", "edges", "seconds"}``."""
    t0 = time.time()
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    lengths = rng.integers(6, 14, num_nodes)
    picks = rng.integers(0, len(words), (num_nodes, 13))
    text = [" ".join(words[picks[i, :lengths[i]]]) for i in range(num_nodes)]
    nodes = pa.table({
        "id": pa.array(np.arange(num_nodes, dtype=np.int64)),
        "text": pa.array(text, pa.string()),
        "label": pa.array(rng.integers(0, 10, num_nodes)),
        "split": split_strings(random_split(num_nodes, (0.6, 0.2, 0.2), seed)),
    })
    del text
    write_parquet_atomic(nodes, out / "nodes" / "item.parquet")
    perm = rng.permutation(num_nodes)
    src_parts, dst_parts = [], []
    for start in range(0, num_edges, chunk):
        n = min(chunk, num_edges - start)
        src = rng.integers(0, num_nodes, n)
        dst = perm[np.minimum((num_nodes * rng.random(n) ** 3).astype(np.int64), num_nodes - 1)]
        keep = src != dst
        src_parts.append(src[keep])
        dst_parts.append(dst[keep])
    src, dst = np.concatenate(src_parts), np.concatenate(dst_parts)
    write_parquet_atomic(pa.table({"src": src, "dst": dst}), out / "edges" / "item__links__item.parquet")
    write_json_atomic(out / "metadata.json", {
        "name": "synthetic", "node_types": {"item": {"classes": [str(c) for c in range(10)]}},
        "edge_types": {"item__links__item": {}},
        "source": f"benchmarks/gen_synthetic_tag.py --nodes {num_nodes} --edges {num_edges} --seed {seed}"})
    return {"nodes": num_nodes, "edges": int(len(src)), "seconds": time.time() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=1_000_000)
    p.add_argument("--edges", type=int, default=10_000_000)
    p.add_argument("--out", default="work/synth")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    res = generate(args.nodes, args.edges, Path(args.out), args.seed)
    print(f"wrote {args.out}: {res['nodes']} nodes, {res['edges']} edges in {res['seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
