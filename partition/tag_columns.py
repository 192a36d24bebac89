"""Reading and checking the columns of one TAG Parquet file (see :mod:`partition.tag`).

Every check raises :class:`TAGFormatError` with one line naming the file, the column and the
first offending row or id. Checks run as Arrow kernels: no Python object per row is made.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SPLITS = ("train", "val", "test")
#: integer code of each split in :attr:`NodeTable.split` / :attr:`EdgeTable.split`; 0 = none.
SPLIT_CODE = {name: i + 1 for i, name in enumerate(SPLITS)}
#: without classes declared in ``metadata.json`` the classes are ``0..max(label)``; a label
#: at or above this is refused (it would make a list of that many class names)
MAX_UNDECLARED_CLASSES = 100_000
_INT64_MAX = np.iinfo(np.int64).max
#: what a text may not consist of only: whitespace, control/format characters, combining
#: marks (uncased BERT tokenizers strip them) and U+FFFD
_NO_TOKEN_CHARS = r"[\s\p{Cc}\p{Cf}\p{Mn}\x{FFFD}]+"


class TAGFormatError(ValueError):
    """A TAG folder or one of its files breaks the format; the message names file and row/id."""


def _first(mask) -> int:
    """Row of the first True of a boolean Arrow array."""
    return pc.index(mask, True).as_py()


def read_table(path: Path, required: Sequence[str]) -> pa.Table:
    """Read a Parquet file and check it has the ``required`` columns, each once."""
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise TAGFormatError(f"{path}: not a readable Parquet file ({exc})") from exc
    names = table.column_names
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise TAGFormatError(f"{path}: column(s) {dup} appear more than once")
    missing = [c for c in required if c not in names]
    if missing:
        raise TAGFormatError(f"{path}: missing required column(s) {missing}; found {names}")
    return table


def int_column(table: pa.Table, name: str, path: Path, allow_null: bool) -> np.ndarray:
    """An integer column as int64 ``[N]`` (nulls -> ``-1`` when ``allow_null``)."""
    col = table.column(name)
    if not pa.types.is_integer(col.type):
        raise TAGFormatError(f"{path}: column {name!r} must be integer, found {col.type}")
    if col.null_count and not allow_null:
        raise TAGFormatError(f"{path}: column {name!r} is null at row {_first(pc.is_null(col))}")
    if pa.types.is_uint64(col.type):
        big = pc.greater(col, pa.scalar(_INT64_MAX, pa.uint64())).fill_null(False)
        if pc.any(big).as_py():
            row = _first(big)
            raise TAGFormatError(f"{path}: column {name!r} value {col[row].as_py()} at row {row} "
                                 "does not fit in int64")
    out = col.cast(pa.int64()).fill_null(-1).to_numpy()
    return out if out.flags.writeable else out.copy()  # torch.from_numpy wants it writable


def split_column(table: pa.Table, path: Path, ids: np.ndarray, what: str) -> Optional[np.ndarray]:
    """The ``split`` column as int8 codes (:data:`SPLIT_CODE`, 0 = null), or None without it."""
    if "split" not in table.column_names:
        return None
    col = table.column("split")
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
            or pa.types.is_dictionary(col.type)):
        raise TAGFormatError(f"{path}: column 'split' must be string, found {col.type}")
    values = col.to_pylist()
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


def label_column(
    table: pa.Table, path: Path, ids: np.ndarray, what: str, classes: Optional[List[str]]
) -> Tuple[Optional[np.ndarray], Optional[List[str]]]:
    """The ``label`` column (int64, ``-1`` = null) and the class names, or ``(None, None)``."""
    if "label" not in table.column_names:
        return None, None
    label = int_column(table, "label", path, allow_null=True)
    is_null = pc.is_null(table.column("label")).to_numpy(zero_copy_only=False)
    if classes is None:
        big = np.flatnonzero(label >= MAX_UNDECLARED_CLASSES)
        if len(big):
            row = int(big[0])
            raise TAGFormatError(
                f"{path}: {what} {ids[row]} (row {row}) has label {int(label[row])}; without "
                f"classes declared in metadata.json labels must be below "
                f"{MAX_UNDECLARED_CLASSES}")
        known = label[label >= 0]
        classes = [str(c) for c in range(int(known.max()) + 1 if len(known) else 0)]
    bad = np.flatnonzero((label < -1) | (label >= len(classes)) | ((label == -1) & ~is_null))
    if len(bad):
        row = int(bad[0])
        raise TAGFormatError(
            f"{path}: {what} {ids[row]} (row {row}) has label {int(label[row])}, outside the "
            f"{len(classes)} declared classes 0..{len(classes) - 1}"
        )
    return label, classes


def check_text_column(table: pa.Table, path: Path, ids: np.ndarray) -> None:
    """The ``text`` column is string and no text is null, empty, or only whitespace / control
    characters (:data:`_NO_TOKEN_CHARS`)."""
    col = table.column("text")
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise TAGFormatError(f"{path}: column 'text' must be string, found {col.type}")
    stripped = pc.replace_substring_regex(col, pattern=_NO_TOKEN_CHARS, replacement="")
    empty = pc.or_(pc.is_null(col), pc.equal(pc.utf8_length(stripped), 0)).fill_null(True)
    if pc.any(empty).as_py():
        row = _first(empty)
        value = col[row].as_py()
        detail = "null" if value is None else f"{value[:40]!r}: only whitespace or control characters"
        raise TAGFormatError(f"{path}: node id {ids[row]} (row {row}) has an empty text ({detail})")
