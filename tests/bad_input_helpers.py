"""Helpers of the bad-input tests: write a TAG from plain columns, run the partition CLI
in-process and check its failure is one clean line."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pyarrow as pa
import pyarrow.parquet as pq


def write_raw_tag(root: Path, nodes: Dict[str, dict], edges: Dict[str, dict],
                  meta=None, raw_meta: Optional[str] = None) -> Path:
    """Write ``nodes/<name>.parquet`` / ``edges/<name>.parquet`` from ``{column: values}``
    (a ``pa.Array`` keeps its type) without any validation, so tables may be malformed."""
    for folder, tables in (("nodes", nodes), ("edges", edges)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, cols in tables.items():
            table = cols if isinstance(cols, pa.Table) else pa.table(cols)
            pq.write_table(table, root / folder / f"{name}.parquet")
    if raw_meta is not None:
        (root / "metadata.json").write_text(raw_meta)
    elif meta is not None:
        (root / "metadata.json").write_text(json.dumps(meta))
    return root


def snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes): to check nothing was touched."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_partition(argv: Sequence[str], capsys) -> Tuple[int, str, str]:
    """``python -m partition argv`` in this process: (exit code, stdout, stderr)."""
    from partition.cli import main

    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    """Exit code 2, exactly one stderr line ``error: ...`` holding every fragment, no traceback."""
    lines = [line for line in err.splitlines()
             if line.strip() and not line.startswith("tokenize ")]  # tqdm's progress bar
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def write_run_config(root: Path, tag: Path, bert: Path) -> str:
    """``<root>/run.yaml``: the tiny run config (:func:`run_helpers.tiny_config`) on ``tag``;
    returns its path."""
    import yaml

    from run_helpers import tiny_config

    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_config(root, tag, bert)))
    return str(path)


def driver_refuses(main, argv, capsys, *folders) -> str:
    """Run a driver's ``main(argv)`` in this process; it must exit 2 with one ``error:``
    line (returned) and leave ``folders`` byte for byte, folder for folder, as they were."""
    from run_helpers import tree_hash

    before = [tree_hash(f) for f in folders]
    rc = main(argv)
    line = assert_one_line_error(rc, capsys.readouterr().err)
    assert [tree_hash(f) for f in folders] == before, "something was written"
    return line


def leftovers(parent: Path) -> List[str]:
    """Temp folders of a partition run left in ``parent`` (there must be none)."""
    return sorted(p for p in os.listdir(parent) if ".tmp-" in p or ".old-" in p) \
        if parent.exists() else []
