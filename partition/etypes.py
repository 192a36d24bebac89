"""Canonical edge types: the ``(src_ntype, etype, dst_ntype)`` alias and its name
``src__etype__dst`` (edge file stems, config keys, metadata keys). Defined once, here, with no
dependency beyond the standard library (the LM-side code imports it on machines without
DGL or pyarrow)."""
from __future__ import annotations

from typing import Iterable, Tuple

CanonicalEtype = Tuple[str, str, str]


def etype_file_name(cetype: CanonicalEtype) -> str:
    """``("paper", "cites", "paper") -> "paper__cites__paper"`` (the edge file's stem, and how
    configs and metadata name a canonical edge type)."""
    return "__".join(cetype)


def parse_etype_name(name: str) -> CanonicalEtype:
    """``"paper__cites__paper" -> ("paper", "cites", "paper")``, the inverse of
    :func:`etype_file_name`. Raises ValueError unless ``name`` has exactly three parts."""
    parts = tuple(name.split("__"))
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{name!r} is not a canonical edge type 'src__etype__dst'")
    return parts  # type: ignore[return-value]


def parse_etype(name: str, known: Iterable[Tuple[str, str, str]], what: str,
                where: str) -> CanonicalEtype:
    """``name`` (``src__etype__dst``) as one of the canonical etypes ``known``.

    Raises
    ------
    ValueError, one line: ``"<what> '<name>' is not an edge type of <where>; known: [...]"``.
    """
    known = [tuple(c) for c in known]
    try:
        cetype = parse_etype_name(name)
    except ValueError:
        cetype = None
    if cetype not in known:
        raise ValueError(f"{what} {name!r} is not an edge type of {where}; known: "
                         f"{sorted(etype_file_name(c) for c in known)}")
    return cetype
