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
import builtins
import importlib
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_path, write_parquet_atomic
from ..tag import SPLIT_CODE, TAG, EdgeTable, NodeTable
from ..tag_write import write_tag

#: placeholder text of a node that has no text in the text file (flagged ``has_text=false``).
NO_TEXT = "[no text]"

#: per dataset: node type, relation, node-id mapping file, label-name mapping file, default
#: text files (relative to ``<root>`` / to the dataset folder ``{ds}``).
DATASETS: Dict[str, dict] = {
    "ogbn-arxiv": {
        "kind": "node", "ntype": "paper", "etype": "cites",
        "mapping": "nodeidx2paperid.csv.gz", "label_names": "labelidx2arxivcategeory.csv.gz",
        "text_defaults": ["titleabs.tsv", "{ds}/titleabs.tsv"], "text_kind": "titleabs",
    },
    "ogbn-products": {
        "kind": "node", "ntype": "product", "etype": "copurchased",
        "mapping": "nodeidx2asin.csv.gz", "label_names": "labelidx2productcategory.csv.gz",
        "text_defaults": ["{ds}/asin2title.tsv", "{ds}/asin2title.csv"], "text_kind": "asin_title",
    },
    "ogbl-citation2": {
        "kind": "link", "ntype": "paper", "etype": "cites",
        "mapping": "nodeidx2paperid.csv.gz", "label_names": None,
        "text_defaults": ["titleabs.tsv", "{ds}/titleabs.tsv"], "text_kind": "titleabs",
    },
}


def _import_ogb():
    """``import ogb`` without its PyPI version check: ``ogb/version.py`` (and ``outdated`` on
    its own import) start threads querying pypi.org, a network call that offline may hang until
    a timeout. While ogb is first imported, ``outdated`` is made unimportable (ogb then skips
    the check, as it does when the package is not installed); the entry is restored after."""
    if "ogb" not in sys.modules and "outdated" not in sys.modules:
        sys.modules["outdated"] = None  # type: ignore[assignment]  # -> ImportError in ogb
        try:
            return importlib.import_module("ogb")
        finally:
            del sys.modules["outdated"]
    return importlib.import_module("ogb")


def _meta_info(name: str):
    """ogb's own master.csv row for ``name`` (version, split kind, additional node files)."""
    import pandas as pd

    sub = "nodeproppred" if DATASETS[name]["kind"] == "node" else "linkproppred"
    ogb = _import_ogb()  # local: only this converter needs ogb
    master = pd.read_csv(os.path.join(os.path.dirname(ogb.__file__), sub, "master.csv"),
                         index_col=0, keep_default_na=False)
    return master[name]


def dataset_dir(name: str, ogb_root: os.PathLike) -> Path:
    """The folder ogb reads ``name`` from: ``<root>/<name with _>_dgl`` if it exists, else
    ``<root>/<name with _>`` (the same rule as ogb's loaders)."""
    base = Path(ogb_root) / "_".join(name.split("-"))
    dgl_dir = base.with_name(base.name + "_dgl")
    return dgl_dir if dgl_dir.exists() else base


def required_files(name: str, ogb_root: os.PathLike,
                   text_file: Optional[os.PathLike] = None) -> List[Tuple[str, List[Path]]]:
    """What ``convert_ogb(name, ogb_root)`` needs: a list of ``(description, alternatives)``;
    an entry is satisfied when any one of its alternative paths exists.

    Raises ValueError for an unsupported ``name``.
    """
    if name not in DATASETS:
        raise ValueError(f"unsupported dataset {name!r}; expected one of {sorted(DATASETS)}")
    spec, info = DATASETS[name], _meta_info(name)
    ds = dataset_dir(name, ogb_root)
    raw, split = ds / "raw", ds / "split" / info["split"]
    processed = ds / "processed" / "dgl_data_processed"
    need: List[Tuple[str, List[Path]]] = [
        ("ogb release marker (ships in OGB's zip; ogb asks interactively without it)",
         [ds / f"RELEASE_v{info['version']}.txt"]),
    ]
    raw_files = ["edge.csv.gz", "num-node-list.csv.gz", "num-edge-list.csv.gz"]
    if spec["kind"] == "node":
        raw_files.append("node-label.csv.gz")
    if info["additional node files"] != "None":
        raw_files += [f"{f}.csv.gz" for f in info["additional node files"].split(",")]
    for f in raw_files:
        need.append(("raw graph file, or ogb's processed file instead",
                     [raw / f, processed]))
    ext = "csv.gz" if spec["kind"] == "node" else "pt"
    for part in ("train", "valid", "test"):
        need.append((f"official {info['split']!r} split", [split / f"{part}.{ext}",
                                                           split / "split_dict.pt"]))
    need.append(("node-id mapping", [ds / "mapping" / spec["mapping"]]))
    if text_file is not None:
        need.append(("text file (--text-file)", [Path(text_file)]))
    else:
        defaults = [Path(ogb_root) / d.format(ds=ds.name) for d in spec["text_defaults"]]
        need.append(("text file (or pass --text-file)", defaults))
    return need


def check_files(name: str, ogb_root: os.PathLike, text_file: Optional[os.PathLike] = None) -> Path:
    """Check every file :func:`convert_ogb` needs before ogb is touched (so it never downloads
    or prompts); return the text file to use.

    Raises
    ------
    FileNotFoundError
        One error listing the whole expected layout, each missing entry marked ``MISSING``.
    """
    need = required_files(name, ogb_root, text_file)
    missing = [(what, alts) for what, alts in need if not any(p.exists() for p in alts)]
    if missing:
        lines = [f"{name}: dataset files missing under --ogb-root {ogb_root} (nothing is "
                 "downloaded; put the unzipped OGB release and the text file there):"]
        for what, alts in need:
            mark = "MISSING" if (what, alts) in missing else "ok     "
            lines.append(f"  {mark} {' or '.join(str(p) for p in alts)}   [{what}]")
        raise FileNotFoundError("\n".join(lines))
    return next(p for p in need[-1][1] if p.exists())


@contextmanager
def _offline_ogb(kind: str) -> Iterator[None]:
    """Make ogb unable to download or to wait on ``input()`` (both raise instead)."""
    def refuse(*args, **kwargs):
        raise RuntimeError(f"ogb tried to prompt/download ({args[:1]}); the local OGB files are "
                           "incomplete or from another release (see check_files)")

    module = "ogb.nodeproppred.dataset_dgl" if kind == "node" else "ogb.linkproppred.dataset_dgl"
    with mock.patch(f"{module}.decide_download", refuse), \
            mock.patch(f"{module}.download_url", refuse), \
            mock.patch.object(builtins, "input", refuse):
        yield


def join_title_abstract(title: str, abstract: str) -> str:
    """``title + ". " + abstract`` after stripping both; only the non-empty one if the other
    is empty; ``""`` if both are."""
    title, abstract = title.strip(), abstract.strip()
    if title and abstract:
        return f"{title}. {abstract}"
    return title or abstract


def read_titleabs(path: os.PathLike, wanted: Optional[set] = None) -> Dict[int, str]:
    """Read a ``paper id <TAB> title <TAB> abstract`` file into ``{paper id: text}``.

    A first row whose id field is not an integer is taken as a header and skipped; tabs after
    the second are kept in the abstract; ``wanted`` (paper ids) limits what is kept in memory.

    Raises ValueError naming the line for a non-integer id (after the first line) or a line
    without a tab.
    """
    texts: Dict[int, str] = {}
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t", 2)
            try:
                pid = int(fields[0])
            except ValueError:
                if lineno == 1:
                    continue  # header row
                raise ValueError(f"{path}: line {lineno}: paper id {fields[0]!r} is not an integer")
            if len(fields) < 2:
                raise ValueError(f"{path}: line {lineno}: expected 'paper id<TAB>title<TAB>abstract'")
            if wanted is not None and pid not in wanted:
                continue
            texts[pid] = join_title_abstract(fields[1], fields[2] if len(fields) > 2 else "")
    return texts


def read_asin_titles(path: os.PathLike) -> Dict[str, str]:
    """Read a CSV (TSV if the name ends in ``.tsv``) with header columns ``asin``, ``title``.

    Raises ValueError naming the file if either column is missing.
    """
    import csv

    import pandas as pd

    tsv = str(path).endswith(".tsv")
    df = pd.read_csv(path, sep="\t" if tsv else ",", dtype=str, keep_default_na=False,
                     quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    missing = [c for c in ("asin", "title") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)} "
                         "(expected a header row with 'asin' and 'title')")
    return {a.strip(): t.strip() for a, t in zip(df["asin"], df["title"])}


def _read_mapping(path: Path, n: int) -> np.ndarray:
    """``mapping/nodeidx2*.csv.gz`` (header ``node idx,<key>``) -> keys in node order."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if df.shape[1] < 2:
        raise ValueError(f"{path}: expected columns 'node idx,<id>'; found {list(df.columns)}")
    idx = df.iloc[:, 0].astype(np.int64).to_numpy()
    if len(idx) != n or not np.array_equal(np.sort(idx), np.arange(n)):
        raise ValueError(f"{path}: node idx column must be a permutation of 0..{n - 1} "
                         f"(the graph has {n} nodes); found {len(idx)} rows")
    keys = np.empty(n, dtype=object)
    keys[idx] = df.iloc[:, 1].str.strip().to_numpy()
    return keys


def _class_names(path: Path, num_classes: int) -> List[str]:
    """``mapping/labelidx2*.csv.gz`` -> names by label idx; ``0..C-1`` if absent."""
    import pandas as pd

    if not path.exists():
        return [str(c) for c in range(num_classes)]
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    names = [str(c) for c in range(num_classes)]
    for i, v in zip(df.iloc[:, 0].astype(int), df.iloc[:, 1]):
        if 0 <= i < num_classes:
            names[i] = v.strip()
    return names


def _node_texts(keys: np.ndarray, text_kind: str, text_path: Path) -> Tuple[List[str], np.ndarray]:
    if text_kind == "titleabs":
        ids = np.array([int(k) for k in keys], dtype=np.int64)
        table = read_titleabs(text_path, wanted=set(ids.tolist()))
        found = [table.get(int(k), "") for k in ids]
    else:
        table = read_asin_titles(text_path)
        found = [table.get(k, "") for k in keys]
    has_text = np.array([bool(t.strip()) for t in found], dtype=bool)
    return [t if h else NO_TEXT for t, h in zip(found, has_text)], has_text


def _add_has_text(node_parquet: Path, has_text: np.ndarray) -> None:
    table = pq.read_table(node_parquet)
    table = table.append_column("has_text", pa.array(has_text, pa.bool_()))
    write_parquet_atomic(table, node_parquet)


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
    with _offline_ogb(spec["kind"]):
        if spec["kind"] == "node":
            from ogb.nodeproppred import DglNodePropPredDataset

            dataset = DglNodePropPredDataset(name=name, root=str(ogb_root))
            graph, labels = dataset[0]
            split_idx = dataset.get_idx_split()
        else:
            from ogb.linkproppred import DglLinkPropPredDataset

            dataset = DglLinkPropPredDataset(name=name, root=str(ogb_root))
            graph = dataset[0]
            edge_split = dataset.get_edge_split()

    n = int(graph.num_nodes())
    keys = _read_mapping(ds / "mapping" / spec["mapping"], n)
    texts, has_text = _node_texts(keys, spec["text_kind"], text_path)
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
        y = labels.reshape(-1).numpy()
        label = np.where(np.isnan(y), -1, y).astype(np.int64) if y.dtype.kind == "f" else y.astype(np.int64)
        codes = np.zeros(n, dtype=np.int8)
        for part, code_name in (("train", "train"), ("valid", "val"), ("test", "test")):
            idx = split_idx[part].numpy().astype(np.int64)
            if (codes[idx] != 0).any():
                raise ValueError(f"{name}: split {part!r} overlaps another split")
            codes[idx] = SPLIT_CODE[code_name]
            counts[code_name] = int(len(idx))
        classes = _class_names(ds / "mapping" / spec["label_names"], int(dataset.num_classes))
        src, dst = (t.numpy().astype(np.int64) for t in graph.edges())
        nodes = NodeTable(ntype, np.arange(n, dtype=np.int64), texts, label, codes, classes)
        edges = EdgeTable(cetype, src, dst)
        meta["split"] = {"kind": f"ogb official ({dataset.meta_info['split']})"}
    else:
        parts, negatives = [], {}
        for part, code_name in (("train", "train"), ("valid", "val"), ("test", "test")):
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


if __name__ == "__main__":
    main()
