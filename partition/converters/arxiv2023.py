"""Convert arXiv-2023 (TRAIS-Lab/LLM-Structured-Data, ``dataset/arxiv_2023``) into a TAG.

The release is a folder of gzip CSVs (one header line each)::

    raw/titles.csv.gz   titles          [N]  the node's title (the only text)
    raw/labels.csv.gz   labels          [N]  arXiv category, e.g. cs.LG
    raw/ids.csv.gz      ids             [N]  arXiv identifier (kept as ``arxiv_id`` in metadata)
    raw/edges.csv.gz    source,target   [E]  directed citations: source cites target
    split/{train,valid,test}.csv.gz     node ids of the fixed split (the rest: no split)

The TAG gets one node type ``paper`` (id = row, text = title, label = index of the category in
the sorted list of categories present, ``split`` as below) and one relation
``paper__cites__paper`` in the citation direction. Self loops and duplicate citations are left
out (the RGCN has its own self-loop term) and counted. Messages along citations only go
``cited -> citing``; the partitioner adds the reverse relation ``rev_cites``
(``data.add_reverse_edges``, on by default) so both directions reach the RGCN.

Two splits (``--split``):

* ``fixed`` (default): the release's time split, 19,461 / 4,682 / 668 (train up to 2019, val
  2020, test 2023; the 9,057 papers of 2021-2023 outside it are in no split). It is the
  realistic one (train on the past, test on new papers) and stays the reference, but its 668
  test nodes give one accuracy (about 0.7) a standard error of about 1.8 points
  (``sqrt(p(1-p)/n)``), too coarse to see a one-point change.
* ``random``: a seeded random 60/20/20 split of every labelled node, the same rule as the TAPE
  converter's ``--split random`` (:func:`partition.tag_write.random_split`: numpy
  ``default_rng(seed).permutation``, ``floor`` of 60% train and 20% val, the rest test). Every
  node of the release has a category (the 9,057 outside the time split too), so all 33,868 are
  split: 20,320 / 6,773 / 6,775, a standard error of about 0.56 points, fine enough to see one
  point. Not comparable with the fixed split's numbers (other test nodes, no time shift). The
  TAG's ``metadata.json`` records ``split: {kind, seed, fractions}``; the fixed split's
  metadata is unchanged (no ``split`` entry), its output byte-for-byte the same as before.

Usage::

    python -m partition.converters.arxiv2023 --src ../shared/data/arxiv_2023 --out work/arxiv23/tag
    python -m partition.converters.arxiv2023 --src ../shared/data/arxiv_2023 \\
        --out work/arxiv23_random/tag --split random --seed 0
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
from ..tag_write import random_split, write_tag

SPLIT_FILES = {"train": "train.csv.gz", "val": "valid.csv.gz", "test": "test.csv.gz"}
SPLITS = ("fixed", "random")
RANDOM_FRACTIONS = (0.6, 0.2, 0.2)


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


def _fixed_split(root: Path, n: int) -> np.ndarray:
    """The release's time split (``split/*.csv.gz``) as int8 ``[n]`` split codes (0 = none)."""
    split = np.zeros(n, dtype=np.int8)
    for name, file in SPLIT_FILES.items():
        column = {"train": "train_id", "val": "val_id", "test": "test_id"}[name]
        ids = np.asarray(_column(root / "split" / file, column), dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"{root / 'split' / file}: node ids must be in [0, {n})")
        split[ids] = SPLIT_CODE[name]
    return split


def _random_split(labels: Sequence[str], seed: int) -> np.ndarray:
    """Seeded 60/20/20 split codes over the labelled nodes (non-empty category), 0 elsewhere.

    The rule of :func:`partition.tag_write.random_split` applied to the labelled nodes in id
    order: ``default_rng(seed).permutation``, ``floor`` of 60% train and 20% val, the rest test.
    """
    labelled = np.flatnonzero(np.asarray([bool(str(t).strip()) for t in labels], dtype=bool))
    split = np.zeros(len(labels), dtype=np.int8)
    split[labelled] = random_split(len(labelled), RANDOM_FRACTIONS, seed)
    return split


def convert_arxiv2023(src: str, out_dir: Optional[str] = None, split: str = "fixed",
                      seed: int = 0) -> Tuple[TAG, Dict[str, int]]:
    """Read the release folder ``src`` and (optionally) write it as a TAG folder.

    Parameters
    ----------
    split : ``"fixed"`` (the release's time split, 668 test nodes) or ``"random"`` (seeded
        60/20/20 of every labelled node, 6,775 test nodes on the real release); see the module
        docstring for why both.
    seed : the random split's seed (ignored by ``"fixed"``, which does not read it).

    Returns
    -------
    (TAG, counts): ``nodes``, ``edges`` (kept), ``self_loops_removed``,
    ``duplicate_edges_removed``, ``classes`` and the size of each split (``train``, ``val``,
    ``test``); with ``"random"`` also ``labelled`` (the nodes it split).

    Raises
    ------
    FileNotFoundError naming a missing file; ValueError naming the file when a column is
    missing, the files disagree on the node count, or an id is out of range; ValueError for an
    unknown ``split``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
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
    codes = _fixed_split(root, n) if split == "fixed" else _random_split(labels, seed)
    loop = src_ids == dst_ids
    pairs = np.unique(np.stack([src_ids[~loop], dst_ids[~loop]]), axis=1)
    counts = {"nodes": n, "edges": int(pairs.shape[1]), "self_loops_removed": int(loop.sum()),
              "duplicate_edges_removed": int((~loop).sum()) - int(pairs.shape[1]),
              "classes": len(classes)}
    counts.update({s: int((codes == SPLIT_CODE[s]).sum()) for s in SPLIT_FILES})
    metadata = {"name": "arxiv_2023", "source": "TRAIS-Lab/LLM-Structured-Data dataset/arxiv_2023",
                "node_types": {"paper": {"classes": classes}}}
    if split == "random":  # the fixed split's metadata stays as it was (byte-for-byte output)
        counts["labelled"] = int((codes != 0).sum())
        metadata["split"] = {"kind": "random", "seed": seed, "fractions": list(RANDOM_FRACTIONS)}
    paper = NodeTable("paper", np.arange(n, dtype=np.int64), [t.strip() for t in titles],
                      label, codes, classes)
    cites = EdgeTable(("paper", "cites", "paper"), pairs[0], pairs[1])
    tag = TAG("arxiv_2023", {"paper": paper}, {cites.canonical_etype: cites}, metadata)
    if out_dir is not None:
        write_tag(tag, out_dir)
    return tag, counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description="arXiv-2023 (gzip CSVs) -> TAG folder")
    p.add_argument("--src", required=True, help="the release folder (raw/, split/)")
    p.add_argument("--out", required=True, help="TAG folder to write")
    p.add_argument("--split", default="fixed", choices=SPLITS,
                   help="fixed: the release's time split (668 test nodes, the realistic one); "
                        "random: seeded 60/20/20 of every labelled node (6,775 test nodes)")
    p.add_argument("--seed", type=int, default=0, help="seed of --split random (default 0)")
    args = p.parse_args(argv)
    try:
        _, counts = convert_arxiv2023(args.src, args.out, args.split, args.seed)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}")
    print(json.dumps(counts))


if __name__ == "__main__":
    main()


__all__: List[str] = ["convert_arxiv2023", "main"]
