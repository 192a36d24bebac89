"""Atomic file writes: write a temp file beside the target, then ``os.replace`` it into place.

A reader (or a crash) never sees a half-written Parquet table, metadata file or checkpoint
record; a failed write leaves the previous file untouched and no temp file behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, os.PathLike]


def _file_mode() -> int:
    """``0o666`` minus the umask: what a plain ``open(path, "w")`` gives (``mkstemp``: 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path in ``path``'s folder; on normal exit it replaces ``path``.

    On an exception the temp file is deleted and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: PathLike, obj) -> None:
    """``json.dump(obj)`` (indented, UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_parquet_atomic(table, path: PathLike, **kwargs) -> None:
    """``pyarrow.parquet.write_table(table, path, **kwargs)`` atomically."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)
