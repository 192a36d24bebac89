"""Does a TAG have what a task needs? Answered from Parquet schemas and row counts only.

Run before partitioning or starting any process: reads each file's footer (no data page), so
it takes milliseconds on any TAG.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .tag_columns import TAGFormatError
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
    if row.target == "ntype":
        folder, name, what = "nodes", target_ntype, "node type"
    else:
        folder, name, what = "edges", target_etype, "relation"
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
