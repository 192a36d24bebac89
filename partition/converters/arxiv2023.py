"""Convert arXiv-2023 (TRAIS-Lab/LLM-Structured-Data, ``dataset/arxiv_2023``) into a TAG.

The release is a folder of gzip CSVs (one header line each)::

    raw/titles.csv.gz   titles          [N]  the node's title (the only text)
    raw/labels.csv.gz   labels          [N]  arXiv category, e.g. cs.LG
    raw/ids.csv.gz      ids             [N]  arXiv identifier (kept as ``arxiv_id`` in metadata)
    raw/edges.csv.gz    source,target   [E]  directed citations: source cites target
    split/{train,valid,test}.csv.gz     node ids of the fixed split (the rest: no split)

The TAG gets one node type ``paper`` (id = row, text = title, label = index of the category in
the sorted list of categories present, ``split`` from the fixed split) and one relation
``paper__cites__paper`` in the citation direction. Self loops and duplicate citations are left
out (the RGCN has its own self-loop term) and counted. Messages along citations only go
``cited -> citing``; the partitioner adds the reverse relation ``rev_cites``
(``data.add_reverse_edges``, on by default) so both directions reach the RGCN.

Usage::

    python -m partition.converters.arxiv2023 --src ../shared/data/arxiv_2023 --out work/arxiv23/tag
"""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow.csv as pacsv

from ..tag import SPLIT_CODE, TAG, EdgeTable, NodeTable
from ..tag_write import write_tag

SPLIT_FILES = {"train": "train.csv.gz", "val": "valid.csv.gz", "test": "test.csv.gz"}


def _column(path: Path, name: str) -> list:
    """Column ``name`` of a gzip CSV (pyarrow's reader: quoted titles with commas, newlines)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: arxiv-2023 file not found")
    with gzip.open(path, "rb") as f:
        table = pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(
            column_types={name: "string"} if name in ("titles", "labels", "ids") else None,
            strings_can_be_null=False))
    if name not in table.column_names:
        raise ValueError(f"{path}: column {name!r} missing; found {table.column_names}")
    return table.column(name).to_pylist()


def convert_arxiv2023(src: str, out_dir: Optional[str] = None) -> Tuple[TAG, Dict[str, int]]:
    """Read the release folder ``src`` and (optionally) write it as a TAG folder.

    Returns
    -------
    (TAG, counts): ``nodes``, ``edges`` (kept), ``self_loops_removed``,
    ``duplicate_edges_removed``, ``classes`` and the size of each split.

    Raises
    ------
    FileNotFoundError naming a missing file; ValueError naming the file when a column is
    missing, the files disagree on the node count, or an id is out of range.
    """
    root = Path(src)
    titles = _column(root / "raw" / "titles.csv.gz", "titles")
    labels = _column(root / "raw" / "labels.csv.gz", "labels")
    n = len(titles)
    if len(labels) != n:
        raise ValueError(f"{root / 'raw' / 'labels.csv.gz'}: {len(labels)} labels for {n} titles")
    src_ids = np.asarray(_column(root / "raw" / "edges.csv.gz", "source"), dtype=np.int64)
    dst_ids = np.asarray(_column(root / "raw" / "edges.csv.gz", "target"), dtype=np.int64)
    if len(src_ids) and (min(src_ids.min(), dst_ids.min()) < 0 or
                         max(src_ids.max(), dst_ids.max()) >= n):
        raise ValueError(f"{root / 'raw' / 'edges.csv.gz'}: node ids must be in [0, {n})")
    classes = sorted(set(labels))
    label = np.searchsorted(np.asarray(classes), np.asarray(labels)).astype(np.int64)
    split = np.zeros(n, dtype=np.int8)
    for name, file in SPLIT_FILES.items():
        column = {"train": "train_id", "val": "val_id", "test": "test_id"}[name]
        ids = np.asarray(_column(root / "split" / file, column), dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"{root / 'split' / file}: node ids must be in [0, {n})")
        split[ids] = SPLIT_CODE[name]
    loop = src_ids == dst_ids
    pairs = np.unique(np.stack([src_ids[~loop], dst_ids[~loop]]), axis=1)
    counts = {"nodes": n, "edges": int(pairs.shape[1]), "self_loops_removed": int(loop.sum()),
              "duplicate_edges_removed": int((~loop).sum()) - int(pairs.shape[1]),
              "classes": len(classes)}
    counts.update({s: int((split == SPLIT_CODE[s]).sum()) for s in SPLIT_FILES})
    paper = NodeTable("paper", np.arange(n, dtype=np.int64), [t.strip() for t in titles],
                      label, split, classes)
    cites = EdgeTable(("paper", "cites", "paper"), pairs[0], pairs[1])
    tag = TAG("arxiv_2023", {"paper": paper}, {cites.canonical_etype: cites},
              {"name": "arxiv_2023", "source": "TRAIS-Lab/LLM-Structured-Data dataset/arxiv_2023",
               "node_types": {"paper": {"classes": classes}}})
    if out_dir is not None:
        write_tag(tag, out_dir)
    return tag, counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description="arXiv-2023 (gzip CSVs) -> TAG folder")
    p.add_argument("--src", required=True, help="the release folder (raw/, split/)")
    p.add_argument("--out", required=True, help="TAG folder to write")
    args = p.parse_args(argv)
    try:
        _, counts = convert_arxiv2023(args.src, args.out)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}")
    print(json.dumps(counts))


if __name__ == "__main__":
    main()


__all__: List[str] = ["convert_arxiv2023", "main"]
