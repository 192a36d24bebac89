"""Does a TAG have what a task needs? Checked before partitioning or starting any process.

:func:`check_task_against_tag`: the target table and its columns, from Parquet footers only
(milliseconds on any TAG). :func:`check_task_targets`: the targets can train and be selected
(train and val rows, labels on them, labels within the classes), reading only the target
table's ``split`` and ``label`` columns (Arrow kernels, no Python object per row).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .tag_columns import MAX_UNDECLARED_CLASSES, SPLITS, TAGFormatError
from .task_kinds import TASK_KINDS


class TaskSchemaError(TAGFormatError):
    """The TAG lacks the target type/relation of a task or a column the task needs."""


def check_task_against_tag(tag_path: os.PathLike, kind: str, target_ntype: str = "",
                           target_etype: str = "") -> None:
    """Check that the TAG at ``tag_path`` has the task's target and the columns it needs.

    ``node_classification`` needs ``nodes/<target_ntype>.parquet`` with rows and an integer
    ``label`` and a ``split`` column; ``edge_classification`` the same on
    ``edges/<target_etype>.parquet``; ``link_prediction`` a ``split`` column there.

    Raises
    ------
    TaskSchemaError (a TAGFormatError, a ValueError)
        One line naming the file (and the known types/relations, or the missing column).
    """
    if kind not in TASK_KINDS:
        raise TaskSchemaError(f"task kind {kind!r} is not one of {sorted(TASK_KINDS)}")
    root, row = Path(tag_path), TASK_KINDS[kind]
    folder, name, _ = _target(kind, target_ntype, target_etype)
    what = "node type" if folder == "nodes" else "relation"
    path = root / folder / f"{name}.parquet"
    if not name or not path.is_file():
        known = sorted(p.stem for p in (root / folder).glob("*.parquet"))
        raise TaskSchemaError(f"{path}: {kind} targets {what} {name!r}, which the TAG at "
                              f"{tag_path} does not have; known: {known}")
    try:
        meta = pq.read_metadata(path)
        schema = meta.schema.to_arrow_schema()
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise TaskSchemaError(f"{path}: not a readable Parquet file ({exc})") from exc
    missing = [c for c in row.needed_columns if c not in schema.names]
    if missing:
        raise TaskSchemaError(f"{path}: {kind} on {name} needs column(s) {missing}; found "
                              f"{schema.names}")
    if "label" in row.needed_columns and not pa.types.is_integer(schema.field("label").type):
        raise TaskSchemaError(f"{path}: column 'label' must be integer, found "
                              f"{schema.field('label').type}")
    if meta.num_rows == 0:
        raise TaskSchemaError(f"{path}: {kind} on {name} finds no rows in it")


def _target(kind: str, target_ntype: str, target_etype: str) -> Tuple[str, str, str]:
    """``(folder, name, row noun)`` of a task's target table: nodes or edges."""
    if TASK_KINDS[kind].target == "ntype":
        return "nodes", target_ntype, "node"
    return "edges", target_etype, "edge"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _declared_classes(root: Path, folder: str, name: str) -> Optional[int]:
    """How many classes ``metadata.json`` declares for the target (None: none declared)."""
    from .tag import read_metadata

    meta_path = root / "metadata.json"
    meta = read_metadata(meta_path) if meta_path.exists() else {}
    types = meta.get("node_types" if folder == "nodes" else "edge_types", {})
    classes = types.get(name, {}).get("classes")
    return None if classes is None else len(classes)


def _split_counts(path: Path, col: pa.ChunkedArray, noun: str) -> Dict[str, int]:
    """Rows per split value of the ``split`` column; TaskSchemaError for another type or a
    value outside :data:`SPLITS`."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise TaskSchemaError(f"{path}: column 'split' must be string, found {col.type}")
    counts = {v.as_py(): c.as_py() for v, c in zip(*pc.value_counts(col).flatten())}
    bad = sorted(v for v in counts if v is not None and v not in SPLITS)
    if bad:
        raise TaskSchemaError(f"{path}: column 'split' has the value {bad[0]!r} "
                              f"({_n(counts[bad[0]], noun)}); expected one of {list(SPLITS)} "
                              "or null")
    return counts


def check_task_targets(tag_path: os.PathLike, kind: str, target_ntype: str = "",
                       target_etype: str = "") -> None:
    """Check that the task's targets can train a model and select it: at least one target
    with split ``train`` and one with ``val`` (every stage keeps its best model on
    validation), and for the classification tasks a label on every train/val/test target
    and every label within the classes ``metadata.json`` declares (without a declaration,
    ``0 .. 99999``). Call after :func:`check_task_against_tag` (the table and its columns
    exist).

    Raises
    ------
    TaskSchemaError (a TAGFormatError, a ValueError)
        One line naming the file, the column and the count at fault, e.g.
        ``<tag>/nodes/paper.parquet: no node has split 'train' (column 'split'): nothing to
        train on``.
    """
    root = Path(tag_path)
    folder, name, noun = _target(kind, target_ntype, target_etype)
    path = root / folder / f"{name}.parquet"
    columns = [c for c in ("split", "label") if c in TASK_KINDS[kind].needed_columns]
    try:
        table = pq.read_table(path, columns=columns)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise TaskSchemaError(f"{path}: not a readable Parquet file ({exc})") from exc
    counts = _split_counts(path, table.column("split"), noun)
    for split, why in (("train", "nothing to train on"),
                       ("val", "nothing to select the model on (every stage keeps the model "
                               "that is best on validation)")):
        if not counts.get(split):
            raise TaskSchemaError(f"{path}: no {noun} has split {split!r} (column 'split'): "
                                  f"{why}")
    if "label" not in columns:
        return
    split, label = table.column("split"), table.column("label")
    for s in SPLITS:
        missing = pc.sum(pc.and_(pc.equal(split, s), pc.is_null(label))).as_py() or 0
        if missing:
            raise TaskSchemaError(
                f"{path}: {_n(missing, noun)} with split {s!r} "
                f"{'has' if missing == 1 else 'have'} no label (column 'label' is null); "
                f"every train/val/test {noun} needs one")
    num = _declared_classes(root, folder, name)
    high = num if num is not None else MAX_UNDECLARED_CLASSES
    outside = pc.or_(pc.less(label, 0), pc.greater_equal(label, high)).fill_null(False)
    bad = pc.sum(outside).as_py() or 0
    if bad:
        row = pc.index(outside, True).as_py()
        where = (f"the {num} classes 0..{num - 1} declared in {root / 'metadata.json'}"
                 if num is not None else
                 f"0..{MAX_UNDECLARED_CLASSES - 1} (no classes declared in metadata.json)")
        raise TaskSchemaError(
            f"{path}: {_n(bad, noun)} {'has' if bad == 1 else 'have'} a label outside "
            f"{where} (column 'label'), e.g. {label[row].as_py()} at row {row}")
