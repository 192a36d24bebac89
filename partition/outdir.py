"""The partition output folder: refuse one that holds user data, write it whole or not at all.

Every folder :func:`partition.build.partition_tag` writes carries a marker file
(:data:`MARKER`, JSON listing the entries the partitioner wrote). A folder is replaced only
when it is missing, empty, or carries the marker and holds nothing beyond the entries it lists;
anything else -- a file, a folder of user files, the TAG folder itself, a folder inside the TAG
or one containing it -- is refused with one line before any work starts.

The new partitions are written into a sibling temp folder; :func:`staged_output` swaps it into
place only when everything is written (the previous partitions are renamed aside and deleted
after the swap), and on any failure removes the temp folder and the parent folders it created.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

#: marker file of a folder written by the partitioner
MARKER = ".lmgnn-partition"


class OutputDirError(ValueError):
    """``--out`` cannot be written without risking data the partitioner did not write."""


def _marker_entries(folder: Path) -> Optional[List[str]]:
    """The entries the marker of ``folder`` lists, or None if it has no (readable) marker."""
    try:
        data = json.loads((folder / MARKER).read_text())
        return list(data["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or below it (resolved paths)."""
    return a == b or b in a.parents


def file_in_the_way(path: Path) -> Optional[Path]:
    """The first of ``path`` and its parents that exists but is not a folder, or None."""
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def check_out_dir(out_dir: os.PathLike, tag_dir: os.PathLike) -> None:
    """Refuse an output folder whose replacement could lose data (no file is written).

    Raises
    ------
    OutputDirError
        One line naming ``out_dir`` when it is an existing file, the TAG folder, inside the TAG
        folder or containing it, a folder with entries the partitioner did not write (no
        :data:`MARKER`, or entries the marker does not list), or below a file.
    """
    out, tag = Path(out_dir).resolve(), Path(tag_dir).resolve()
    if inside(out, tag) or inside(tag, out):
        where = "is" if out == tag else ("is inside" if inside(out, tag) else "contains")
        raise OutputDirError(f"{out_dir}: the output folder {where} the TAG folder {tag_dir}; "
                             "choose a folder outside it")
    blocker = file_in_the_way(out)
    if blocker is not None:
        which = "" if blocker == out else f"{blocker} "
        raise OutputDirError(f"{out_dir}: {which}is a file, not a folder; choose another --out")
    if not out.exists():
        return
    entries = sorted(os.listdir(out))
    if not entries:
        return
    ours = _marker_entries(out)
    foreign = [e for e in entries if e != MARKER and (ours is None or e not in ours)]
    if foreign:
        why = (f"no {MARKER} marker" if ours is None else "not written by the partitioner")
        raise OutputDirError(
            f"{out_dir}: holds files the partitioner did not write ({why}: "
            f"{foreign[:3]}{' ...' if len(foreign) > 3 else ''}); refusing to replace it; "
            "choose a new or empty folder")


def _missing_parents(path: Path) -> List[Path]:
    """Ancestors of ``path`` that do not exist yet, outermost first."""
    return [p for p in reversed(path.parents) if not p.exists()]


@contextmanager
def staged_output(out_dir: os.PathLike, tag_dir: os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder beside ``out_dir``; on normal exit it becomes ``out_dir``.

    Checks ``out_dir`` first (:func:`check_out_dir`). On normal exit writes :data:`MARKER`
    listing the temp folder's entries, renames a previous ``out_dir`` aside, renames the temp
    folder to ``out_dir`` and deletes the previous one. On an exception nothing of the run is
    left: the temp folder and any parent folder created for it are removed and ``out_dir``
    is as it was.

    Raises
    ------
    OutputDirError
        ``out_dir`` is refused, or its parent folder cannot be created or written (one line).
    """
    check_out_dir(out_dir, tag_dir)
    out = Path(out_dir).absolute()
    created = _missing_parents(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as exc:
        _remove_created(created)
        raise OutputDirError(f"{out_dir}: cannot write there ({exc.strerror or exc})") from None
    try:
        yield tmp
        entries = sorted(os.listdir(tmp))
        (tmp / MARKER).write_text(json.dumps({"written_by": "python -m partition",
                                              "entries": entries}) + "\n")
        check_out_dir(out_dir, tag_dir)  # nobody put user files there meanwhile
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        if old.exists() and not out.exists():  # failed between the two renames
            os.rename(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_created(created)
        raise


def _remove_created(created: List[Path]) -> None:
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            pass
