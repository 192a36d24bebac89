"""The project's on-disk text-attributed graph (TAG) format: reading, validation, writing.

A TAG folder holds::

    metadata.json                          # optional: name, declared classes, source, license
    nodes/<ntype>.parquet                  # id, text, [label], [split]
    edges/<src_ntype>__<etype>__<dst_ntype>.parquet   # src, dst, [label], [split]

Columns
-------
nodes/<ntype>.parquet
    ``id`` (integer, unique within the node type; need not be contiguous),
    ``text`` (string, non-empty; a table without a ``text`` column is a text-less node type,
    whose nodes get a learnable embedding instead of an LM encoding), optional ``label`` (integer class id, null = unlabelled),
    optional ``split`` (string in ``{"train", "val", "test"}``, null = unused).
edges/<src>__<etype>__<dst>.parquet
    ``src``, ``dst`` (integer ids of the ``src``/``dst`` node tables), optional ``label``,
    optional ``split`` (as for nodes).

``metadata.json`` may declare the classes of a labelled node or edge type::

    {"name": "cora", "node_types": {"paper": {"classes": ["Rule_Learning", ...]}},
     "edge_types": {"question__has_answer__answer": {"classes": ["no", "yes"]}}}

Without a declaration the classes are ``0 .. max(label)``.

Every validation failure raises :class:`TAGFormatError` whose message names the file and the
offending column, row or id: a TAG never loads partially or silently drops data.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Dict, Iterator, List, Optional

import numpy as np
import pyarrow.parquet as pq
import pydantic

from .errors import one_line
from .etypes import CanonicalEtype, etype_file_name, parse_etype_name  # noqa: F401 (re-exported)
from .tag_columns import SPLIT_CODE, SPLITS, TAGFormatError  # noqa: F401 (re-exported)
from .tag_columns import check_text_column, int_column, label_column, read_table, split_column

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")



@dataclass
class NodeTable:
    """The nodes of one node type.

    Attributes
    ----------
    ntype : str
    ids : np.ndarray
        int64 ``[N]``, the user's ids in file order; row ``i`` becomes DGL node ``i``.
    text : list of str or None
        ``[N]`` node texts; None when read with ``load_text=False`` (see :func:`iter_texts`).
    label : np.ndarray or None
        int64 ``[N]``, ``-1`` where unlabelled.
    split : np.ndarray or None
        int8 ``[N]``: 0 none, 1 train, 2 val, 3 test (:data:`SPLIT_CODE`).
    classes : list of str or None
        Class names (index = label id) when the type is labelled.
    has_text : bool
        False for a text-less node type (no ``text`` column): ``text`` is None and
        :func:`iter_texts` refuses it.
    """

    ntype: str
    ids: np.ndarray
    text: Optional[List[str]]
    label: Optional[np.ndarray] = None
    split: Optional[np.ndarray] = None
    classes: Optional[List[str]] = None
    path: Optional[Path] = None  # the Parquet file it was read from
    has_text: bool = True

    @property
    def num_nodes(self) -> int:
        return len(self.ids)


@dataclass
class EdgeTable:
    """The edges of one canonical edge type, as row indices into the node tables.

    Attributes
    ----------
    canonical_etype : (str, str, str)
    src, dst : np.ndarray
        int64 ``[E]`` row indices (DGL node ids) into the ``src``/``dst`` node tables.
    label, split, classes : as in :class:`NodeTable`.
    orig_row : int64 ``[E]`` row of each edge in its Parquet file, when rows were removed
        (link-prediction hold-out); None means ``arange(E)``.
    """

    canonical_etype: CanonicalEtype
    src: np.ndarray
    dst: np.ndarray
    label: Optional[np.ndarray] = None
    split: Optional[np.ndarray] = None
    classes: Optional[List[str]] = None
    orig_row: Optional[np.ndarray] = None

    @property
    def num_edges(self) -> int:
        return len(self.src)


@dataclass
class TAG:
    """A validated text-attributed graph held in memory."""

    name: str
    nodes: Dict[str, NodeTable]
    edges: Dict[CanonicalEtype, EdgeTable]
    metadata: dict = field(default_factory=dict)


def _check_name(name: str, what: str, path: Path) -> None:
    if not _NAME_RE.match(name) or "__" in name:
        raise TAGFormatError(
            f"{path}: {what} name {name!r} must be an identifier (letters, digits, '_') "
            "without a double underscore"
        )


def read_node_table(path: Path, ntype: str, classes: Optional[List[str]] = None,
                    load_text: bool = True) -> NodeTable:
    """Read and validate ``nodes/<ntype>.parquet``.

    With ``load_text=False`` the texts are validated but not kept (``text`` is None); stream
    them later with :func:`iter_texts` (the partitioner does, so a million-node TAG never holds
    every string in Python at once).

    A table without a ``text`` column gives a text-less node type (``has_text=False``).

    Raises
    ------
    TAGFormatError
        Missing ``id`` column, non-integer or null id, duplicate id, null/empty text, label
        outside ``classes``, unknown split value; the message names the file and the id/row.
    """
    table = read_table(path, ["id"])
    ids = int_column(table, "id", path, allow_null=False)
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if len(uniq) != len(ids):
        dup = uniq[counts > 1][0]
        rows = np.flatnonzero(ids == dup)[:5].tolist()
        raise TAGFormatError(f"{path}: duplicate node id {int(dup)} at rows {rows}")
    label, classes = label_column(table, path, ids, "node id", classes)
    split = split_column(table, path, ids, "node id")
    if "text" not in table.column_names:
        return NodeTable(ntype, ids, None, label, split, classes, path, has_text=False)
    check_text_column(table, path, ids)
    text = table.column("text").to_pylist() if load_text else None
    return NodeTable(ntype, ids, text, label, split, classes, path)


def iter_texts(table: NodeTable, batch_size: int = 65536) -> Iterator[str]:
    """Yield a node table's texts in row order, from memory or streamed from its Parquet file
    in ``batch_size``-row batches (``pyarrow.parquet.ParquetFile.iter_batches``).

    Raises ValueError for a text-less node type."""
    if not table.has_text:
        raise ValueError(f"node type {table.ntype!r} has no text column")
    if table.text is not None:
        yield from table.text
        return
    if table.path is None:
        raise ValueError(f"node table {table.ntype!r} has neither texts nor a file to stream")
    for batch in pq.ParquetFile(table.path).iter_batches(batch_size=batch_size, columns=["text"]):
        yield from batch.column(0).to_pylist()


class _TypeMetadata(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    classes: Optional[List[Annotated[str, pydantic.Strict()]]] = None


class _Metadata(pydantic.BaseModel):
    """The shape :func:`read_metadata` checks; other keys (source, license, ...) are free."""

    model_config = pydantic.ConfigDict(extra="allow")
    name: Optional[Annotated[str, pydantic.Strict()]] = None
    node_types: Dict[str, _TypeMetadata] = {}
    edge_types: Dict[str, _TypeMetadata] = {}


def read_metadata(path: Path) -> dict:
    """``metadata.json`` as a dict, checked: a mapping whose ``name`` is a string and whose
    ``node_types``/``edge_types`` map type names to mappings with an optional list of string
    ``classes``.

    Raises TAGFormatError (one line naming the file and key) on invalid JSON or another shape.
    """
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TAGFormatError(f"{path}: invalid JSON ({exc})") from None
    try:
        _Metadata.model_validate(meta, strict=False)
    except pydantic.ValidationError as exc:
        raise TAGFormatError(f"{path}: {one_line(exc, root='top level')}") from None
    return meta


def read_tag(root: os.PathLike, load_text: bool = True) -> TAG:
    """Read and validate a TAG folder (see the module docstring for the format).

    Returns
    -------
    TAG
        Node tables keyed by ntype, edge tables keyed by canonical etype with endpoints mapped
        from user ids to row indices.

    Raises
    ------
    TAGFormatError
        On any format violation, naming the file and the offending column/row/id.
    """
    root = Path(root)
    if not root.is_dir():
        raise TAGFormatError(f"{root}: TAG folder does not exist")
    meta_path = root / "metadata.json"
    meta = read_metadata(meta_path) if meta_path.exists() else {}
    node_files = sorted((root / "nodes").glob("*.parquet"))
    if not node_files:
        raise TAGFormatError(f"{root / 'nodes'}: no <ntype>.parquet node tables found")
    nodes: Dict[str, NodeTable] = {}
    for path in node_files:
        ntype = path.stem
        _check_name(ntype, "node type", path)
        classes = meta.get("node_types", {}).get(ntype, {}).get("classes")
        nodes[ntype] = read_node_table(path, ntype, classes, load_text)

    edges: Dict[CanonicalEtype, EdgeTable] = {}
    for path in sorted((root / "edges").glob("*.parquet")):
        parts = path.stem.split("__")
        if len(parts) != 3:
            raise TAGFormatError(
                f"{path}: edge file name must be <src_ntype>__<etype>__<dst_ntype>.parquet"
            )
        cetype = tuple(parts)
        for name, what in zip(parts, ("source node type", "edge type", "destination node type")):
            _check_name(name, what, path)
        for side, ntype in (("source", parts[0]), ("destination", parts[2])):
            if ntype not in nodes:
                raise TAGFormatError(
                    f"{path}: {side} node type {ntype!r} has no table nodes/{ntype}.parquet"
                )
        edges[cetype] = _read_edge_table(path, cetype, nodes, meta)
    if not edges:
        raise TAGFormatError(f"{root / 'edges'}: no <src>__<etype>__<dst>.parquet edge tables")
    return TAG(meta.get("name", root.name), nodes, edges, meta)


def _read_edge_table(
    path: Path, cetype: CanonicalEtype, nodes: Dict[str, NodeTable], meta: dict
) -> EdgeTable:
    table = read_table(path, ["src", "dst"])
    ends = {}
    for col, ntype in (("src", cetype[0]), ("dst", cetype[2])):
        user_ids = int_column(table, col, path, allow_null=False)
        node_ids = nodes[ntype].ids
        order = np.argsort(node_ids, kind="stable")
        pos = np.searchsorted(node_ids, user_ids, sorter=order)
        pos = np.clip(pos, 0, max(len(node_ids) - 1, 0))
        rows = order[pos] if len(node_ids) else np.zeros(len(user_ids), dtype=np.int64)
        bad = (np.flatnonzero(node_ids[rows] != user_ids) if len(node_ids)
               else np.arange(len(user_ids)))
        if len(bad):
            row = int(bad[0])
            raise TAGFormatError(
                f"{path}: row {row} column {col!r} names {ntype} id {int(user_ids[row])}, "
                f"which is not in nodes/{ntype}.parquet ({len(bad)} such rows)"
            )
        ends[col] = rows.astype(np.int64)
    edge_rows = np.arange(table.num_rows)
    classes = meta.get("edge_types", {}).get(etype_file_name(cetype), {}).get("classes")
    label, classes = label_column(table, path, edge_rows, "edge row", classes)
    split = split_column(table, path, edge_rows, "edge row")
    return EdgeTable(cetype, ends["src"], ends["dst"], label, split, classes)
