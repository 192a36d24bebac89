"""Writing a TAG folder (the inverse of :func:`partition.tag.read_tag`) and seeded splits.

Imported through :mod:`partition.tag` (``from partition.tag import write_tag``) as well.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import pyarrow as pa

from .atomic import write_json_atomic, write_parquet_atomic
from .tag import TAG, etype_file_name, iter_texts
from .tag_columns import SPLIT_CODE, SPLITS


def split_strings(codes: Optional[np.ndarray]) -> Optional[pa.Array]:
    """int8 split codes (:data:`SPLIT_CODE`, 0 = none) -> string column (null = none)."""
    if codes is None:
        return None
    names = [None, *SPLITS]
    return pa.array([names[c] for c in codes.tolist()], type=pa.string())


def write_tag(tag: TAG, root: os.PathLike) -> None:
    """Write ``tag`` as a TAG folder (each file written atomically: temp file, then rename).

    Node ids written are ``tag.nodes[ntype].ids``; edge endpoints are mapped back to them.
    """
    root = Path(root)
    meta = dict(tag.metadata)
    meta["name"] = tag.name
    meta["node_types"] = {
        nt: ({"classes": t.classes} if t.classes is not None else {}) for nt, t in tag.nodes.items()
    }
    meta["edge_types"] = {
        etype_file_name(ce): ({"classes": t.classes} if t.classes is not None else {})
        for ce, t in tag.edges.items()
    }
    for ntype, t in tag.nodes.items():
        cols = {"id": pa.array(t.ids, pa.int64())}
        if t.has_text:
            cols["text"] = pa.array(list(iter_texts(t)), pa.string())
        if t.label is not None:
            cols["label"] = pa.array(t.label, pa.int64(), mask=t.label < 0)
        if t.split is not None:
            cols["split"] = split_strings(t.split)
        write_parquet_atomic(pa.table(cols), root / "nodes" / f"{ntype}.parquet")
    for cetype, t in tag.edges.items():
        cols = {
            "src": pa.array(tag.nodes[cetype[0]].ids[t.src], pa.int64()),
            "dst": pa.array(tag.nodes[cetype[2]].ids[t.dst], pa.int64()),
        }
        if t.label is not None:
            cols["label"] = pa.array(t.label, pa.int64(), mask=t.label < 0)
        if t.split is not None:
            cols["split"] = split_strings(t.split)
        write_parquet_atomic(pa.table(cols), root / "edges" / f"{etype_file_name(cetype)}.parquet")
    write_json_atomic(root / "metadata.json", meta)


def random_split(n: int, fractions: Tuple[float, float, float], seed: int) -> np.ndarray:
    """Seeded random train/val/test split codes.

    Returns int8 ``[n]`` with :data:`SPLIT_CODE` values; sizes are ``floor(f * n)`` for train
    and val, the rest test.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1: {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(fractions[0] * n), int(fractions[1] * n)
    codes = np.full(n, SPLIT_CODE["test"], dtype=np.int8)
    codes[perm[:n_train]] = SPLIT_CODE["train"]
    codes[perm[n_train:n_train + n_val]] = SPLIT_CODE["val"]
    return codes
