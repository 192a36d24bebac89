"""Convert the TAPE / GLBench "<dataset> with text" ``.pt`` release into a Parquet TAG.

The release (e.g. ``cora.pt``) is a ``torch.save``d plain dict::

    raw_texts  : list[str]            [N]   "Title. : Abstract"
    y          : int64 tensor         [N]   class id per node
    edge_index : int64 tensor         [2, E] COO (Cora: symmetric, with duplicate columns)

The TAG gets one node type (``paper``) with a seeded random train/val/test ``split``
(TAPE's 60/20/20 convention by default, or the low-label "20 per class / 500 / 1000"
option) and one relation ``paper__cites__paper``. Duplicate edge columns are removed and
their number reported; self loops are kept out (the RGCN has its own self-loop term).

Usage::

    python -m partition.converters.tape --pt cora.pt --out examples/cora/tag \\
        --classes Rule_Learning,Neural_Networks,...
"""
from __future__ import annotations

import argparse
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..tag import SPLIT_CODE, TAG, EdgeTable, NodeTable
from ..tag_write import random_split, write_tag

CORA_CLASSES = [
    "Rule_Learning", "Neural_Networks", "Case_Based", "Genetic_Algorithms",
    "Theory", "Reinforcement_Learning", "Probabilistic_Methods",
]


def low_label_split(y: np.ndarray, per_class: int, n_val: int, n_test: int, seed: int) -> np.ndarray:
    """Planetoid-style split: ``per_class`` train nodes per class, then ``n_val``/``n_test``.

    Returns int8 ``[N]`` split codes (0 = unused).
    """
    rng = np.random.default_rng(seed)
    codes = np.zeros(len(y), dtype=np.int8)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        codes[rng.choice(members, size=min(per_class, len(members)), replace=False)] = SPLIT_CODE["train"]
    rest = rng.permutation(np.flatnonzero(codes == 0))
    codes[rest[:n_val]] = SPLIT_CODE["val"]
    codes[rest[n_val:n_val + n_test]] = SPLIT_CODE["test"]
    return codes


def convert_tape(
    pt_path: str,
    out_dir: Optional[str] = None,
    name: str = "cora",
    classes: Optional[Sequence[str]] = None,
    split: str = "random",
    fractions: Tuple[float, float, float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> Tuple[TAG, Dict[str, int]]:
    """Load a TAPE ``.pt`` release and (optionally) write it as a TAG folder.

    Parameters
    ----------
    pt_path : path of the ``.pt`` file.
    out_dir : where to write the TAG; ``None`` only returns it.
    classes : class names, index = label id (default: ``0..C-1``).
    split : ``"random"`` (``fractions``, seeded) or ``"low_label"`` (20/class, 500 val, 1000 test).

    Returns
    -------
    (TAG, counts) where counts has ``nodes``, ``edges``, ``duplicate_edges_removed``,
    ``self_loops_removed`` and the size of each split.

    Raises
    ------
    FileNotFoundError if ``pt_path`` is missing; ValueError naming the key when the dict lacks
    ``raw_texts``/``y``/``edge_index`` or their sizes disagree.
    """
    import torch  # local: the TAG format itself does not need torch

    if not os.path.exists(pt_path):
        raise FileNotFoundError(f"{pt_path}: TAPE .pt file not found")
    data = torch.load(pt_path, weights_only=True)
    for key in ("raw_texts", "y", "edge_index"):
        if key not in data:
            raise ValueError(f"{pt_path}: key {key!r} missing; found {sorted(data)}")
    texts: List[str] = list(data["raw_texts"])
    y = data["y"].numpy().astype(np.int64)
    ei = data["edge_index"].numpy().astype(np.int64)
    n = len(texts)
    if len(y) != n:
        raise ValueError(f"{pt_path}: 'y' has {len(y)} entries but 'raw_texts' has {n}")
    if ei.ndim != 2 or ei.shape[0] != 2 or (ei.size and (ei.min() < 0 or ei.max() >= n)):
        raise ValueError(f"{pt_path}: 'edge_index' must be [2, E] with ids in [0, {n})")
    self_loop = ei[0] == ei[1]
    pairs = np.unique(ei[:, ~self_loop], axis=1)
    counts = {
        "nodes": n,
        "edges": int(pairs.shape[1]),
        "duplicate_edges_removed": int((~self_loop).sum() - pairs.shape[1]),
        "self_loops_removed": int(self_loop.sum()),
    }
    if split == "random":
        codes = random_split(n, fractions, seed)
    elif split == "low_label":
        codes = low_label_split(y, 20, 500, 1000, seed)
    else:
        raise ValueError(f"unknown split {split!r}; expected 'random' or 'low_label'")
    for s, c in SPLIT_CODE.items():
        counts[s] = int((codes == c).sum())
    classes = list(classes) if classes is not None else [str(c) for c in range(int(y.max()) + 1)]
    nodes = NodeTable("paper", np.arange(n, dtype=np.int64), texts, y, codes, classes)
    edges = EdgeTable(("paper", "cites", "paper"), pairs[0], pairs[1])
    tag = TAG(name, {"paper": nodes}, {edges.canonical_etype: edges}, {
        "source": f"TAPE/GLBench '{name} with text' release ({os.path.basename(pt_path)})",
        "split": {"kind": split, "seed": seed, "fractions": list(fractions)},
    })
    if out_dir is not None:
        write_tag(tag, out_dir)
    return tag, counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pt", required=True, help="TAPE .pt file (e.g. cora.pt)")
    p.add_argument("--out", required=True, help="output TAG folder")
    p.add_argument("--name", default="cora")
    p.add_argument("--classes", default=None,
                   help="comma-separated class names; 'cora' for the Cora names")
    p.add_argument("--split", default="random", choices=["random", "low_label"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    classes = CORA_CLASSES if args.classes == "cora" else (
        args.classes.split(",") if args.classes else None)
    _, counts = convert_tape(args.pt, args.out, args.name, classes, args.split, seed=args.seed)
    print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
