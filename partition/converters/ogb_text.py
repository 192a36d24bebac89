"""Reading the OGB side files a TAG needs beyond ogb's graph: the node-id mapping
(``mapping/nodeidx2*.csv.gz``), the label names (``mapping/labelidx2*.csv.gz``) and the text
files (``titleabs.tsv``; an ``asin,title`` CSV/TSV), joined into one text per node in node
order, with :data:`NO_TEXT` where a node has none. Used by
:func:`partition.converters.ogb.convert_ogb`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

#: placeholder text of a node that has no text in the text file (flagged ``has_text=false``).
NO_TEXT = "[no text]"


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


def read_mapping(path: Path, n: int) -> np.ndarray:
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


def class_names(path: Path, num_classes: int) -> List[str]:
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


def node_texts(keys: np.ndarray, text_kind: str, text_path: Path) -> Tuple[List[str], np.ndarray]:
    """``(texts, has_text)`` in node order: the text of each mapping key (``titleabs``: a paper
    id, else an asin) read from ``text_path``, :data:`NO_TEXT` where there is none."""
    if text_kind == "titleabs":
        ids = np.array([int(k) for k in keys], dtype=np.int64)
        table = read_titleabs(text_path, wanted=set(ids.tolist()))
        found = [table.get(int(k), "") for k in ids]
    else:
        table = read_asin_titles(text_path)
        found = [table.get(k, "") for k in keys]
    has_text = np.array([bool(t.strip()) for t in found], dtype=bool)
    return [t if h else NO_TEXT for t, h in zip(found, has_text)], has_text


__all__: List[str] = ["NO_TEXT", "join_title_abstract", "read_titleabs", "read_asin_titles",
                      "read_mapping", "class_names", "node_texts"]
