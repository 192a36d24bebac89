"""The run folder (``output_dir``) has the partitioner's rules: the project writes only into a
folder that is new, empty, or its own, and never over a file it did not write.

A run folder carries a marker file (:data:`MARKER`) once a driver has used it. Its entries
are the project's own names (:func:`is_ours`): ``config.yaml``, ``configs/`` (one resolved
config per invocation), ``results.json``, ``report.png``, ``logs/``, ``tb/``, ``ray/``, the
launcher's ``ip_config_debug.txt``, stage checkpoints (``<stage>/``, ``<stage>.partial/``,
``<stage>_refit.partial/`` -- folders holding ``metrics.json``) and the temp names of their
atomic writes. :func:`check_run_dir` refuses, with one line naming the folder and what is in
the way, before anything is written:

* an empty ``output_dir``; a file, or a folder below a file;
* the TAG folder, a folder inside it or containing it; the partition folder or one inside
  it (the partition folder may sit *inside* the run folder);
* a folder with entries the project did not write (a marked folder with other names, or an
  unmarked one that is not a run folder of an earlier version -- our names only, with a
  checkpoint or ``results.json``). The ``--config`` file itself may sit in the run folder:
  it is then never written over.

:func:`claim` marks the folder; :func:`write_config` writes the invocation's resolved config
atomically as ``configs/<NNN>.yaml`` (history: one per invocation, never overwritten) and as
``config.yaml`` (the latest) unless ``config.yaml`` is the ``--config`` file.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import List, Optional, Sequence

from launch.api import DEBUG_IP_CONFIG
from partition.atomic import atomic_path, write_json_atomic
from partition.outdir import file_in_the_way, inside

from ..stages import STAGE_ORDER
from .checkpoint import METRICS, progress_names

#: marker file of a folder a driver has used as a run folder
MARKER = ".lmgnn-run"
CONFIG = "config.yaml"
HISTORY = "configs"
_FILES = {CONFIG, "results.json", "report.png", DEBUG_IP_CONFIG, MARKER}
_DIRS = {"logs", "tb", "ray", HISTORY}
_CHECKPOINTS = {n for s in STAGE_ORDER for n in (s, *progress_names(s))}
# temp names of atomic writes: checkpoint folders (.stage2.tmp-<pid>, .stage3.partial.staging)
# and files (.results.json.<random>.tmp, partition.atomic.atomic_path)
_TEMP = re.compile(r"^\.((baseline|stage\d+)(_refit)?(\.partial)?\.((tmp|old)-\d+|staging)"
                   r"|(" + "|".join(re.escape(f) for f in sorted(_FILES)) + r")\..+\.tmp)$")


class RunDirError(ValueError):
    """``output_dir`` cannot be used without risking files the project did not write."""


def is_ours(folder: Path, entry: str) -> bool:
    """Whether ``folder/entry`` is something a run writes (see the module docstring)."""
    path = folder / entry
    if entry in _FILES:
        return path.is_file()
    if entry in _DIRS:
        return path.is_dir()
    if entry in _CHECKPOINTS:
        return (path / METRICS).is_file()
    return bool(_TEMP.match(entry))


def _where(out: Path, other: Path) -> str:
    return "is" if out == other else ("is inside" if inside(out, other) else "contains")


def check_run_dir(output_dir: str, tag_dir: str, part_dir: str,
                  config_path: Optional[str] = None) -> None:
    """Refuse ``output_dir`` as a run folder when writing there could lose data; writes
    nothing. See the module docstring for the rules.

    Raises
    ------
    RunDirError
        One line starting ``output_dir=<value>:`` naming what is in the way (the TAG or
        partition folder by their config keys, up to three foreign entries).
    """
    head = f"output_dir={output_dir!r}:"
    if not str(output_dir).strip():
        raise RunDirError(f"{head} empty; name the run's own folder (e.g. work/cora/run)")
    out = Path(output_dir).resolve()
    tag, part = Path(tag_dir).resolve(), Path(part_dir).resolve()
    if inside(out, tag) or inside(tag, out):
        raise RunDirError(f"{head} {_where(out, tag)} the TAG folder data.tag_path={tag_dir}; "
                          "choose a folder outside it")
    if inside(out, part):
        raise RunDirError(f"{head} {_where(out, part)} the partition folder data.part_dir="
                          f"{part_dir}; choose another folder")
    blocker = file_in_the_way(out)
    if blocker is not None:
        which = "" if blocker == out else f"{blocker} "
        raise RunDirError(f"{head} {which}is a file, not a folder; choose another output_dir")
    if not out.exists():
        return
    extra = {p.name for p in (part, Path(config_path).resolve() if config_path else None)
             if p is not None and p.parent == out}
    entries = sorted(e for e in os.listdir(out) if e not in extra)
    if (out / MARKER).is_file():
        foreign, why = [e for e in entries if not is_ours(out, e)], "not written by a run"
    elif all(is_ours(out, e) for e in entries) and any(
            e in _CHECKPOINTS or e == "results.json" for e in entries):
        foreign, why = [], ""  # a run folder of a version before the marker
    else:
        foreign, why = entries, f"no {MARKER} marker"
    if foreign:
        shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
        raise RunDirError(f"{head} holds files the project did not write ({why}: {shown}); "
                          "refusing to write there; choose a new or empty folder")


def claim(output_dir: str) -> None:
    """Create ``output_dir`` (if needed) and its :data:`MARKER` (if missing).

    Raises RunDirError when the folder cannot be created or written (one line)."""
    out = Path(output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not (out / MARKER).is_file():
            write_json_atomic(out / MARKER, {"written_by": "lmgnn-run",
                                             "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    except OSError as exc:
        raise RunDirError(f"output_dir={output_dir!r}: cannot write there "
                          f"({exc.strerror or exc})") from None


def history(output_dir: str) -> List[Path]:
    """The resolved configs of every invocation in ``output_dir``, oldest first."""
    folder = Path(output_dir) / HISTORY
    return sorted(folder.glob("[0-9][0-9][0-9]*.yaml")) if folder.is_dir() else []


def write_config(text: str, output_dir: str, config_path: Optional[str] = None) -> str:
    """Write one invocation's resolved config ``text`` (YAML) atomically as the next
    ``configs/<NNN>.yaml`` and as ``config.yaml`` unless that is the ``config_path`` file;
    returns the absolute path of the history file (what the job's processes read)."""
    out = Path(output_dir).resolve()
    done: Sequence[Path] = history(output_dir)
    number = 1 + max((int(p.stem) for p in done if p.stem.isdigit()), default=0)
    path = out / HISTORY / f"{number:03d}.yaml"
    for target in (path, out / CONFIG):
        if target.name == CONFIG and config_path and target.exists() and \
                os.path.samefile(target, config_path):
            print(f"[pipeline] {target} is the --config file: left as it is (this run's "
                  f"resolved config: {path})", flush=True)
            continue
        with atomic_path(target) as tmp:
            tmp.write_text(text)
    return str(path)

