"""What a partition set was made from, and what changed since.

The partitioner records in ``lmgnn_meta.json`` a fingerprint of its inputs:

* every file the TAG reader reads (``metadata.json``, ``nodes/*.parquet``,
  ``edges/*.parquet``) by path relative to the TAG folder, size, SHA-256 of its bytes and
  ``mtime_ns``. The content decides: a file whose bytes changed is a change even when it
  was copied back with its old size and modification time (``cp -p``, ``rsync -a``,
  ``tar x``), and a file only touched (same bytes, new time) is not. ``mtime_ns`` is kept as
  information only. Hashing reads every TAG file once per check (``hashlib.file_digest``,
  in chunks; a file whose size changed is not read): measured 1.46 GB/s for SHA-256 on this
  project's 2-core AMD EPYC machine (SHA-NI, file in the page cache; blake2b 0.79 GB/s),
  i.e. about 0.7 s per GB of TAG, or the disk's read speed when the files are not cached;
* every option that shapes the partitions (:class:`partition.options.PartitionOptions`:
  tokenizer model, ``max_seq_len``, ``num_parts``, method, trainers per machine, hold-out
  etypes / negatives / seed, graph name, train balancing, reverse relations);
* the rule METIS splits by (:data:`partition.metis.SPLIT_RULE`): METIS partitions made
  under another rule are rebuilt.

:func:`fingerprint_changes` compares a partition folder with a TAG and options; a driver
re-partitions when it returns anything.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Union

from .metis import SPLIT_RULE
from .options import PartitionOptions
from .tag_columns import TAGFormatError

META_FILE = "lmgnn_meta.json"
HASH = "sha256"
_PATTERNS = ("metadata.json", "nodes/*.parquet", "edges/*.parquet")


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, HASH).hexdigest()


def tag_files(tag_dir: os.PathLike, hashes: bool = True,
              skip: Optional[Dict[str, dict]] = None) -> Dict[str, dict]:
    """``{relative path: {"size": bytes, "mtime_ns": ns, "sha256": hex}}`` of the files a TAG
    reader reads (without ``"sha256"`` when ``hashes`` is False: ``os.stat`` only, instant).
    A file whose size differs from its entry in ``skip`` (an older result) is not hashed: the
    size already says it changed.

    Raises
    ------
    TAGFormatError naming the file when it cannot be read (a symlink loop or a dangling
    link, a folder named ``*.parquet``, no permission).
    """
    root = Path(tag_dir)
    out = {}
    for pattern in _PATTERNS:
        for path in sorted(root.glob(pattern)):
            name = path.relative_to(root).as_posix()
            try:
                st = path.stat()
                entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
                old = (skip or {}).get(name)
                if hashes and (old is None or old.get("size") == st.st_size):
                    entry[HASH] = _digest(path)
            except OSError as exc:
                raise TAGFormatError(f"{path}: cannot read it ({exc.strerror or exc})") from None
            out[name] = entry
    return out


def fingerprint(tag_dir: os.PathLike, options: PartitionOptions) -> dict:
    """The fingerprint recorded in ``lmgnn_meta.json`` (``{"files": ..., "options": ...}``).
    Raises TAGFormatError naming an unreadable TAG file."""
    return {"files": tag_files(tag_dir), "options": asdict(options), "split_rule": SPLIT_RULE}


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
        elif a[HASH] != b[HASH]:
            out.append(f"{name} changed (content)")
    return out


def fingerprint_changes(part_dir: os.PathLike, tag_dir: os.PathLike,
                        options: Union[PartitionOptions, dict],
                        files: Optional[Dict[str, dict]] = None) -> List[str]:
    """What differs between the partitions in ``part_dir`` and ``tag_dir`` + ``options``.

    Parameters
    ----------
    part_dir : a folder written by :func:`partition.build.partition_tag` (or anything else).
    tag_dir : the TAG folder the partitions should come from.
    files : :func:`tag_files` of ``tag_dir`` with hashes when the caller already has them
        (the driver hashes the TAG once per run); None: read here.
    options : the :class:`PartitionOptions` (or its ``asdict``) they should be made with.

    Returns
    -------
    list of str
        Human-readable differences, e.g. ``"nodes/paper.parquet changed (size 123 -> 456)"``,
        ``"nodes/paper.parquet changed (content)"``, ``"new file edges/a__x__b.parquet"``,
        ``"option max_seq_len 128 -> 64"``; a single entry when ``part_dir`` holds no
        partitions, partitions without a fingerprint, or a fingerprint without content
        hashes (made by an older version). Empty when the partitions match: reuse them.

    Reads ``<part_dir>/lmgnn_meta.json`` and every TAG file (hashing costs: module
    docstring); never raises for a missing or unreadable partition folder (that is a
    difference).

    Raises
    ------
    TAGFormatError naming a TAG file that cannot be read (:func:`tag_files`).
    """
    meta_path = Path(part_dir) / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
        recorded = meta["fingerprint"]
        old_files, old_opts = dict(recorded["files"]), recorded["options"]
    except FileNotFoundError:
        return [f"no partitions in {part_dir} ({META_FILE} not found)"]
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{meta_path} records no input fingerprint (partitioned by an older version)"]
    if not all(isinstance(v, dict) and HASH in v and "size" in v for v in old_files.values()):
        return [f"{meta_path} records the TAG files' sizes and times but not their content "
                f"({HASH}; partitioned by an older version)"]
    new_opts = options if isinstance(options, dict) else asdict(options)
    if new_opts.get("method") == "metis" and recorded.get("split_rule") != SPLIT_RULE:
        return [f"{meta_path}: METIS split by an older version (other balance weights; "
                f"partition/metis.py says why)"]
    changes = _file_changes(old_files, files if files is not None
                            else tag_files(tag_dir, skip=old_files))
    for key in sorted(set(old_opts) | set(new_opts)):
        a, b = old_opts.get(key), new_opts.get(key)
        if a != b:
            changes.append(f"option {key} {a!r} -> {b!r}")
    return changes
