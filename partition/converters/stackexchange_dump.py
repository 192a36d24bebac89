"""Reading one Stack Exchange dump file: the ``<row .../>`` records streamed with
:func:`xml.etree.ElementTree.iterparse` (rows cleared after use), integer attributes checked
with messages naming file and row, and text cleaned (whitespace normalised; HTML turned into
plain text with BeautifulSoup). Used by :mod:`partition.converters.stackexchange_records`.
"""
from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

_BLANK_LINES_RE = re.compile(r"\n{3,}")
_TRAILING_WS_RE = re.compile(r"[ \t\r\f\v]+\n")


def iter_rows(path: Path, verbose: bool) -> Iterator[Tuple[int, Dict[str, str]]]:
    """Stream ``(row_number, attributes)`` for each ``<row>`` of a dump file.

    Raises FileNotFoundError naming the file, ValueError naming file and line on bad XML.
    """
    if not path.is_file():
        raise FileNotFoundError(f"Stack Exchange dump file not found: {path}")
    n = 0
    try:
        for _event, elem in ET.iterparse(str(path), events=("end",)):
            if elem.tag == "row":
                yield n, dict(elem.attrib)
                n += 1
                elem.clear()
    except ET.ParseError as exc:
        line, col = exc.position
        raise ValueError(f"{path}: malformed XML at line {line}, column {col}: {exc}") from exc
    if verbose:
        print(f"[stackexchange] read {path.name}: {n} rows", flush=True)


def int_attr(row: Dict[str, str], key: str, path: Path, rowno: int) -> Optional[int]:
    """Integer attribute or None when absent; ValueError naming file/row when not an int."""
    value = row.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"{path}: row {rowno} (Id={row.get('Id')!r}) has non-integer {key}={value!r}"
        ) from None


def require_attr(row: Dict[str, str], key: str, path: Path, rowno: int) -> int:
    """:func:`int_attr` that must be present; ValueError naming file/row when it is absent."""
    value = int_attr(row, key, path, rowno)
    if value is None:
        raise ValueError(f"{path}: row {rowno} (Id={row.get('Id')!r}) lacks the {key} attribute")
    return value


def normalise(text: str) -> str:
    """Line ends to ``\\n``, no-break spaces to spaces, no trailing blanks on a line, at most
    one empty line in a row, stripped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    text = _TRAILING_WS_RE.sub("\n", text)
    return _BLANK_LINES_RE.sub("\n\n", text).strip()


def html_to_text(html: Optional[str]) -> str:
    """Plain text of an HTML fragment (tags removed, entities unescaped, blank runs collapsed).

    Uses BeautifulSoup with the stdlib ``html.parser`` backend.
    """
    if not html:
        return ""
    try:
        from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the Stack Exchange converter needs BeautifulSoup: pip install 'beautifulsoup4>=4.12'"
        ) from exc

    with warnings.catch_warnings():
        # a body that is just a URL or a file-like name is still text, not a locator
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        text = BeautifulSoup(html, "html.parser").get_text()
    return normalise(text)


__all__: List[str] = ["iter_rows", "int_attr", "require_attr", "normalise", "html_to_text"]
