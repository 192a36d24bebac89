"""Shared output of the benchmark scripts: print a table, optionally append it to a Markdown
results file together with the command that produced it."""
from __future__ import annotations

import sys
from typing import Optional


def emit(text: str, results_md: Optional[str] = None) -> None:
    print("\n" + text)
    if results_md:
        with open(results_md, "a") as f:
            f.write(f"\n```\n$ {' '.join(sys.argv)}\n{text}\n```\n")
