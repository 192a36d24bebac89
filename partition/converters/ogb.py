"""Convert OGB datasets (ogbn-arxiv, ogbn-products, ogbl-citation2) into a Parquet TAG.

The graph, labels and official split come from the ``ogb`` package's DGL loaders
(``DglNodePropPredDataset`` / ``DglLinkPropPredDataset``) reading a *local* ``--ogb-root``;
the raw text is joined through the dataset's own node-id mapping. Nothing is downloaded:
every file the loader needs is checked first, and if any is missing ONE
:class:`FileNotFoundError` lists the expected layout with the missing paths marked.

Expected layout (``<root>`` = ``--ogb-root``; ``<ds>`` = ``ogbn_arxiv``, ``ogbn_products`` or
``ogbl_citation2``, or ``<ds>_dgl`` if that folder exists, as ``ogb`` itself prefers)::

    <root>/<ds>/RELEASE_v1.txt            # ships in OGB's zip (without it ogb prompts via input())
    <root>/<ds>/raw/edge.csv.gz           # \\
    <root>/<ds>/raw/num-node-list.csv.gz  #  | or, instead of raw/, an already processed
    <root>/<ds>/raw/num-edge-list.csv.gz  #  | <root>/<ds>/processed/dgl_data_processed
    <root>/<ds>/raw/node-label.csv.gz     #  | (ogbn-* only)
    <root>/<ds>/raw/node_year.csv.gz      # /  (arxiv, citation2: ogb's "additional node file")
    <root>/<ds>/split/<kind>/{train,valid,test}.csv.gz   # ogbn-*: node index lists
    <root>/<ds>/split/<kind>/{train,valid,test}.pt       # ogbl-citation2: edge dicts
    <root>/<ds>/mapping/nodeidx2paperid.csv.gz           # arxiv, citation2 (node idx, paper id)
    <root>/<ds>/mapping/nodeidx2asin.csv.gz              # products (node idx, asin)
    <text file>                                          # see below

``<kind>`` is ``time`` (arxiv, citation2) or ``sales_ranking`` (products). The loader writes
``processed/dgl_data_processed`` into ``<root>/<ds>`` on first use (``<root>`` must be writable).

Text
----
ogbn-arxiv, ogbl-citation2
    ``titleabs.tsv``: tab-separated ``paper id <TAB> title <TAB> abstract``, no header (a
    header row whose first field is not an integer is skipped). Default location
    ``<root>/titleabs.tsv``, else ``<root>/<ds>/titleabs.tsv``; or ``--text-file``. A node's text
    is ``title + ". " + abstract`` (just the non-empty one if the other is empty), joined by
    ``mapping/nodeidx2paperid.csv.gz``. For citation2 the file must cover MAG paper ids beyond
    arXiv (the arxiv ``titleabs.tsv`` only covers arXiv papers).
ogbn-products
    a CSV (``,``) or TSV (tab, if the file name ends in ``.tsv``) **with a header** naming at
    least the columns ``asin`` and ``title`` (others ignored); default
    ``<root>/<ds>/asin2title.tsv`` or ``.csv``, or ``--text-file``. A node's text is its title,
    joined by ``mapping/nodeidx2asin.csv.gz``.

A node whose id has no (non-empty) text gets the placeholder :data:`NO_TEXT` (the TAG format
requires non-empty text) and ``has_text = false`` in an extra boolean column of the node
Parquet (the TAG reader ignores unknown columns); their number is returned as ``missing_text``.

Output
------
* node type ``paper`` (arxiv, citation2) or ``product`` (products), ids ``0..N-1`` = OGB node
  indices; ogbn-*: ``label`` (classes named by ``mapping/labelidx2*.csv.gz`` if present, else
  ``0..C-1``) and ``split`` from ``get_idx_split()`` (train/valid/test -> train/val/test).
* relation ``paper__cites__paper`` / ``product__copurchased__product`` with the edges exactly
  as the OGB DGL graph holds them: arxiv directed as given, **no reverse edges added** (the
  RGCN side can add them); products as ogb serves it, i.e. with ogb's own inverse edges
  (``add_inverse_edge=True`` in ogb's master.csv, so each co-purchase pair appears both ways).
* ogbl-citation2: one edge row per edge, ``split`` = ``train`` for ``get_edge_split()['train']``
  (= the DGL graph's edges) and ``val``/``test`` for the valid/test *positive* edges. OGB's
  negatives are not edges: they are saved beside the TAG as ``ogb_negatives.npz`` with arrays
  ``{valid,test}_source_node`` ``[M]`` and ``{valid,test}_target_node_neg`` ``[M, K]``.

Usage::

    python -m partition.converters.ogb --name ogbn-arxiv --ogb-root DIR --out DIR [--text-file F]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_path, write_parquet_atomic
from ..tag import SPLIT_CODE, TAG, EdgeTable, NodeTable
from ..tag_write import write_tag
from .ogb_local import DATASETS, check_files, dataset_dir, load_offline, required_files
from .ogb_text import (
    NO_TEXT,
    class_names,
    join_title_abstract,
    node_texts,
    read_asin_titles,
    read_mapping,
    read_titleabs,
)

#: the official split's part names -> the TAG's split names
_PARTS = (("train", "train"), ("valid", "val"), ("test", "test"))


def convert_ogb(name: str, ogb_root: os.PathLike, out_dir: os.PathLike,
                text_file: Optional[os.PathLike] = None) -> Dict[str, int]:
    """Load an OGB dataset from a local folder and write it as a TAG folder.

    Parameters
    ----------
    name : ``"ogbn-arxiv"``, ``"ogbn-products"`` or ``"ogbl-citation2"``.
    ogb_root : folder holding ``<ds>/`` (see the module docstring for the layout).
    out_dir : TAG folder to write (each file atomically).
    text_file : the text file; default: the first existing of the module docstring's defaults.

    Returns
    -------
    dict with ``nodes``, ``edges``, ``missing_text`` (nodes flagged ``has_text=false``) and
    the ``train``/``val``/``test`` sizes (nodes for ogbn-*, edges for ogbl-citation2);
    citation2 also ``negatives_valid``/``negatives_test`` (source nodes with negatives saved).

    Raises
    ------
    ValueError : unsupported ``name``; a malformed mapping/text file; overlapping splits.
    FileNotFoundError : a needed file is missing (one message listing the expected layout);
        raised before ogb runs, so nothing is downloaded and no prompt waits on stdin.
    """
    if name not in DATASETS:
        raise ValueError(f"unsupported dataset {name!r}; expected one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    text_path = check_files(name, ogb_root, text_file)
    ds = dataset_dir(name, ogb_root)
    dataset, graph, labels, official_split = load_offline(name, ogb_root)

    n = int(graph.num_nodes())
    keys = read_mapping(ds / "mapping" / spec["mapping"], n)
    texts, has_text = node_texts(keys, spec["text_kind"], text_path)
    ntype = spec["ntype"]
    cetype = (ntype, spec["etype"], ntype)
    counts: Dict[str, int] = {"nodes": n}
    meta = {
        "source": f"OGB {name} (ogb DGL loader, local root), text from {text_path.name}",
        "text": ("title + '. ' + abstract" if spec["text_kind"] == "titleabs" else "title")
                + f"; missing text -> {NO_TEXT!r} with has_text=false",
        "reverse_edges_added": False,
    }

    if spec["kind"] == "node":
        label = _node_labels(labels)
        codes = _node_split(name, n, official_split, counts)
        classes = class_names(ds / "mapping" / spec["label_names"], int(dataset.num_classes))
        src, dst = (t.numpy().astype(np.int64) for t in graph.edges())
        nodes = NodeTable(ntype, np.arange(n, dtype=np.int64), texts, label, codes, classes)
        edges = EdgeTable(cetype, src, dst)
        meta["split"] = {"kind": f"ogb official ({dataset.meta_info['split']})"}
    else:
        src, dst, codes, negatives = _edge_split(official_split, counts)
        nodes = NodeTable(ntype, np.arange(n, dtype=np.int64), texts)
        edges = EdgeTable(cetype, src, dst, split=codes)
        counts["graph_edges"] = int(graph.num_edges())
        meta["split"] = {"kind": f"ogb official edge split ({dataset.meta_info['split']})",
                         "negatives": "ogb_negatives.npz" if negatives else None}
        if negatives:
            with atomic_path(Path(out_dir) / "ogb_negatives.npz") as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **negatives)
    counts["edges"] = int(len(edges.src))
    counts["missing_text"] = int((~has_text).sum())
    meta["missing_text"] = counts["missing_text"]
    tag = TAG(name.replace("-", "_"), {ntype: nodes}, {cetype: edges}, meta)
    write_tag(tag, out_dir)
    _add_has_text(Path(out_dir) / "nodes" / f"{ntype}.parquet", has_text)
    return counts


def _node_labels(labels) -> np.ndarray:
    """ogb's ``[N, 1]`` label tensor -> int64 ``[N]`` (a float NaN, i.e. no label, -> -1)."""
    y = labels.reshape(-1).numpy()
    if y.dtype.kind == "f":
        return np.where(np.isnan(y), -1, y).astype(np.int64)
    return y.astype(np.int64)


def _node_split(name: str, n: int, split_idx: dict, counts: Dict[str, int]) -> np.ndarray:
    """``get_idx_split()`` -> split codes ``[n]`` (0: in no split); the part sizes go into
    ``counts``. Raises ValueError if two parts share a node."""
    codes = np.zeros(n, dtype=np.int8)
    for part, code_name in _PARTS:
        idx = split_idx[part].numpy().astype(np.int64)
        if (codes[idx] != 0).any():
            raise ValueError(f"{name}: split {part!r} overlaps another split")
        codes[idx] = SPLIT_CODE[code_name]
        counts[code_name] = int(len(idx))
    return codes


def _edge_split(edge_split: dict, counts: Dict[str, int]
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """``get_edge_split()`` -> ``(src, dst, split codes, negatives)``: the train, valid and test
    positive edges in that order, and the valid/test negatives (source nodes and their negative
    targets) where given; the part sizes and negative counts go into ``counts``."""
    parts, negatives = [], {}
    for part, code_name in _PARTS:
        d = edge_split[part]
        s = np.asarray(d["source_node"]).astype(np.int64)
        t = np.asarray(d["target_node"]).astype(np.int64)
        parts.append((s, t, np.full(len(s), SPLIT_CODE[code_name], dtype=np.int8)))
        counts[code_name] = int(len(s))
        if part != "train" and "target_node_neg" in d:
            negatives[f"{part}_source_node"] = s
            negatives[f"{part}_target_node_neg"] = np.asarray(d["target_node_neg"]).astype(np.int64)
            counts[f"negatives_{part}"] = int(len(s))
    src, dst, codes = (np.concatenate(c) for c in zip(*parts))
    return src, dst, codes, negatives


def _add_has_text(node_parquet: Path, has_text: np.ndarray) -> None:
    table = pq.read_table(node_parquet)
    table = table.append_column("has_text", pa.array(has_text, pa.bool_()))
    write_parquet_atomic(table, node_parquet)


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, choices=sorted(DATASETS))
    p.add_argument("--ogb-root", required=True, help="folder holding the unzipped OGB dataset")
    p.add_argument("--out", required=True, help="output TAG folder")
    p.add_argument("--text-file", default=None,
                   help="titleabs.tsv (arxiv, citation2) or asin,title CSV/TSV (products)")
    args = p.parse_args(argv)
    counts = convert_ogb(args.name, args.ogb_root, args.out, args.text_file)
    print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


__all__: List[str] = [
    "NO_TEXT", "DATASETS", "dataset_dir", "required_files", "check_files",
    "join_title_abstract", "read_titleabs", "read_asin_titles", "convert_ogb", "main",
]

if __name__ == "__main__":
    main()
