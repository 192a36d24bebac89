"""Which code wrote a stage: the git commit of the checkout that holds ``lmgnn_dist`` and the
tracked files that differ from it (``metrics.json``'s ``code``, :mod:`.checkpoint`), and a
digest of the project's Python source, which decides whether a checkpoint may be reused
(:func:`source_digest`, :mod:`.provenance`)."""
from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

#: the checkout that holds this package (``lmgnn_dist/run/`` -> the repository root)
ROOT = Path(__file__).resolve().parents[2]
#: at most this many modified paths are listed (then ``"... (N more)"``)
MAX_PATHS = 50
#: the project's packages whose source is part of what a stage was trained on
CODE_PACKAGES = ("lmgnn_dist", "partition", "launch", "kernels")


@functools.lru_cache(maxsize=1)
def source_digest(root: Path = ROOT) -> str:
    """16 hex digits of SHA-256 over every ``*.py`` under :data:`CODE_PACKAGES` (relative path
    and bytes, sorted): the same for the same code wherever it is installed, git or not.
    Reads ~100 small files once per process (a few ms)."""
    h = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0")
            h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _git(root: Path, *args: str) -> Optional[str]:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def code_version(root: Path = ROOT) -> Dict[str, object]:
    """``{"commit": <git rev-parse --short HEAD>, "modified": [paths]}`` of the git checkout
    ``root``: ``modified`` are the tracked files (relative to ``root``, sorted) that differ
    from the commit (``git status --porcelain --untracked-files=no``; a rename gives its new
    path), at most :data:`MAX_PATHS`, then ``"... (N more)"``. Both are None when ``root`` is
    not the top of a git checkout (an installed package) or git is missing; never raises."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != Path(root).resolve():
        return {"commit": None, "modified": None}
    commit = (_git(root, "rev-parse", "--short", "HEAD") or "").strip() or None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    if commit is None or status is None:
        return {"commit": commit, "modified": None}
    paths: List[str] = sorted(line[3:].split(" -> ")[-1] for line in status.splitlines()
                              if line.strip())
    if len(paths) > MAX_PATHS:
        paths = paths[:MAX_PATHS] + [f"... ({len(paths) - MAX_PATHS} more)"]
    return {"commit": commit, "modified": paths}
