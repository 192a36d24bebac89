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
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic import write_json_atomic, write_parquet_atomic

SPLITS = ("train", "val", "test")
#: integer code of each split in :attr:`NodeTable.split` / :attr:`EdgeTable.split`; 0 = none.
SPLIT_CODE = {name: i + 1 for i, name in enumerate(SPLITS)}
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

CanonicalEtype = Tuple[str, str, str]


class TAGFormatError(ValueError):
    """A TAG folder or one of its files breaks the format; the message names file and row/id."""


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


def etype_file_name(cetype: CanonicalEtype) -> str:
    """``("paper", "cites", "paper") -> "paper__cites__paper"`` (the edge file's stem, and how
    configs and metadata name a canonical edge type)."""
    return "__".join(cetype)


def parse_etype_name(name: str) -> CanonicalEtype:
    """``"paper__cites__paper" -> ("paper", "cites", "paper")``, the inverse of
    :func:`etype_file_name`. Raises ValueError unless ``name`` has exactly three parts."""
    parts = tuple(name.split("__"))
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{name!r} is not a canonical edge type 'src__etype__dst'")
    return parts  # type: ignore[return-value]


def _check_name(name: str, what: str, path: Path) -> None:
    if not _NAME_RE.match(name) or "__" in name:
        raise TAGFormatError(
            f"{path}: {what} name {name!r} must be an identifier (letters, digits, '_') "
            "without a double underscore"
        )


def _read_table(path: Path, required: Sequence[str]) -> pa.Table:
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise TAGFormatError(f"{path}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise TAGFormatError(
            f"{path}: missing required column(s) {missing}; found {table.column_names}"
        )
    return table


def _int_column(table: pa.Table, name: str, path: Path, allow_null: bool) -> np.ndarray:
    col = table.column(name)
    if not pa.types.is_integer(col.type):
        raise TAGFormatError(f"{path}: column {name!r} must be integer, found {col.type}")
    if col.null_count and not allow_null:
        row = pc.index(pc.is_null(col), True).as_py()
        raise TAGFormatError(f"{path}: column {name!r} is null at row {row}")
    return col.fill_null(-1).to_numpy().astype(np.int64, copy=False)


def _split_column(table: pa.Table, path: Path, ids: np.ndarray, what: str) -> Optional[np.ndarray]:
    if "split" not in table.column_names:
        return None
    values = table.column("split").to_pylist()
    codes = np.zeros(len(values), dtype=np.int8)
    for row, value in enumerate(values):
        if value is None:
            continue
        code = SPLIT_CODE.get(value)
        if code is None:
            raise TAGFormatError(
                f"{path}: {what} {ids[row]} (row {row}) has split {value!r}; "
                f"expected one of {list(SPLITS)} or null"
            )
        codes[row] = code
    return codes


def _label_column(
    table: pa.Table, path: Path, ids: np.ndarray, what: str, classes: Optional[List[str]]
) -> Tuple[Optional[np.ndarray], Optional[List[str]]]:
    if "label" not in table.column_names:
        return None, None
    label = _int_column(table, "label", path, allow_null=True)
    known = label[label >= 0]
    if classes is None:
        classes = [str(c) for c in range(int(known.max()) + 1 if len(known) else 0)]
    is_null = pc.is_null(table.column("label")).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero((label < -1) | (label >= len(classes)) | ((label == -1) & ~is_null))
    if len(bad):
        row = int(bad[0])
        raise TAGFormatError(
            f"{path}: {what} {ids[row]} (row {row}) has label {int(label[row])}, outside the "
            f"{len(classes)} declared classes 0..{len(classes) - 1}"
        )
    return label, classes


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
    table = _read_table(path, ["id"])
    ids = _int_column(table, "id", path, allow_null=False)
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if len(uniq) != len(ids):
        dup = uniq[counts > 1][0]
        rows = np.flatnonzero(ids == dup)[:5].tolist()
        raise TAGFormatError(f"{path}: duplicate node id {int(dup)} at rows {rows}")
    label, classes = _label_column(table, path, ids, "node id", classes)
    split = _split_column(table, path, ids, "node id")
    if "text" not in table.column_names:
        return NodeTable(ntype, ids, None, label, split, classes, path, has_text=False)
    text_col = table.column("text")
    if not (pa.types.is_string(text_col.type) or pa.types.is_large_string(text_col.type)):
        raise TAGFormatError(f"{path}: column 'text' must be string, found {text_col.type}")
    # validated with Arrow kernels: no Python string per node is made here
    empty = pc.or_(pc.is_null(text_col),
                   pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text_col)), 0)).fill_null(True)
    if pc.any(empty).as_py():
        row = pc.index(empty, True).as_py()
        raise TAGFormatError(f"{path}: node id {ids[row]} (row {row}) has an empty text")
    text = text_col.to_pylist() if load_text else None
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
    meta: dict = {}
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise TAGFormatError(f"{meta_path}: invalid JSON ({exc})") from exc
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
    table = _read_table(path, ["src", "dst"])
    ends = {}
    for col, ntype in (("src", cetype[0]), ("dst", cetype[2])):
        user_ids = _int_column(table, col, path, allow_null=False)
        node_ids = nodes[ntype].ids
        order = np.argsort(node_ids, kind="stable")
        pos = np.searchsorted(node_ids, user_ids, sorter=order)
        pos = np.clip(pos, 0, len(node_ids) - 1)
        rows = order[pos]
        bad = np.flatnonzero(node_ids[rows] != user_ids)
        if len(bad):
            row = int(bad[0])
            raise TAGFormatError(
                f"{path}: row {row} column {col!r} names {ntype} id {int(user_ids[row])}, "
                f"which is not in nodes/{ntype}.parquet ({len(bad)} such rows)"
            )
        ends[col] = rows.astype(np.int64)
    edge_rows = np.arange(table.num_rows)
    classes = meta.get("edge_types", {}).get(etype_file_name(cetype), {}).get("classes")
    label, classes = _label_column(table, path, edge_rows, "edge row", classes)
    split = _split_column(table, path, edge_rows, "edge row")
    return EdgeTable(cetype, ends["src"], ends["dst"], label, split, classes)


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
