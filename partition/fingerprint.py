"""What a partition set was made from, and what changed since.

The partitioner records in ``lmgnn_meta.json`` a fingerprint of its inputs:

* every file the TAG reader reads (``metadata.json``, ``nodes/*.parquet``,
  ``edges/*.parquet``) by path relative to the TAG folder, size and ``mtime_ns`` (reading
  ``os.stat`` only, so a many-GB TAG costs nothing; a file copied with a new modification time
  counts as changed);
* every option that shapes the partitions (:class:`partition.options.PartitionOptions`:
  tokenizer model, ``max_seq_len``, ``num_parts``, method, trainers per machine, hold-out
  etypes / negatives / seed, graph name, train balancing, reverse relations).

:func:`fingerprint_changes` compares a partition folder with a TAG and options; a driver
re-partitions when it returns anything.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Union

from .options import PartitionOptions

META_FILE = "lmgnn_meta.json"
_PATTERNS = ("metadata.json", "nodes/*.parquet", "edges/*.parquet")


def tag_files(tag_dir: os.PathLike) -> Dict[str, Dict[str, int]]:
    """``{relative path: {"size": bytes, "mtime_ns": ns}}`` of the files a TAG reader reads."""
    root = Path(tag_dir)
    out = {}
    for pattern in _PATTERNS:
        for path in sorted(root.glob(pattern)):
            st = path.stat()
            out[path.relative_to(root).as_posix()] = {"size": st.st_size,
                                                      "mtime_ns": st.st_mtime_ns}
    return out


def fingerprint(tag_dir: os.PathLike, options: PartitionOptions) -> dict:
    """The fingerprint recorded in ``lmgnn_meta.json`` (``{"files": ..., "options": ...}``)."""
    return {"files": tag_files(tag_dir), "options": asdict(options)}


def _file_changes(old: Dict[str, dict], new: Dict[str, dict]) -> List[str]:
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None:
            out.append(f"new file {name}")
        elif b is None:
            out.append(f"file {name} removed")
        elif a["size"] != b["size"]:
            out.append(f"{name} changed (size {a['size']} -> {b['size']})")
        elif a["mtime_ns"] != b["mtime_ns"]:
            out.append(f"{name} changed (modified since it was partitioned)")
    return out


def fingerprint_changes(part_dir: os.PathLike, tag_dir: os.PathLike,
                        options: Union[PartitionOptions, dict]) -> List[str]:
    """What differs between the partitions in ``part_dir`` and ``tag_dir`` + ``options``.

    Parameters
    ----------
    part_dir : a folder written by :func:`partition.build.partition_tag` (or anything else).
    tag_dir : the TAG folder the partitions should come from.
    options : the :class:`PartitionOptions` (or its ``asdict``) they should be made with.

    Returns
    -------
    list of str
        Human-readable differences, e.g. ``"nodes/paper.parquet changed (size 123 -> 456)"``,
        ``"new file edges/a__x__b.parquet"``, ``"option max_seq_len 128 -> 64"``; a single
        entry when ``part_dir`` holds no partitions or partitions without a fingerprint
        (made by an older version). Empty when the partitions match: reuse them.

    Pure apart from reading ``<part_dir>/lmgnn_meta.json`` and ``os.stat`` of the TAG files;
    never raises for a missing or unreadable folder (that is a difference).
    """
    meta_path = Path(part_dir) / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
        recorded = meta["fingerprint"]
        old_files, old_opts = recorded["files"], recorded["options"]
    except FileNotFoundError:
        return [f"no partitions in {part_dir} ({META_FILE} not found)"]
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{meta_path} records no input fingerprint (partitioned by an older version)"]
    new_opts = options if isinstance(options, dict) else asdict(options)
    changes = _file_changes(old_files, tag_files(tag_dir))
    for key in sorted(set(old_opts) | set(new_opts)):
        a, b = old_opts.get(key), new_opts.get(key)
        if a != b:
            changes.append(f"option {key} {a!r} -> {b!r}")
    return changes
