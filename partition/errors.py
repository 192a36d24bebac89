"""One-line messages for pydantic validation errors.

Pydantic reports every failed rule of a model as a multi-line block; the project's rule is one
line per error naming the key. :func:`one_line` turns the first error of a
``pydantic.ValidationError`` into such a line, e.g. ``stage3.lm_lr must be > 0, got -1``,
``model.fanouts[0]: expected int, got 'x'`` or ``stage1: unknown key(s) ['max_step']``. Used by
the TAG ``metadata.json`` check (:mod:`partition.tag`) and the run config
(:mod:`lmgnn_dist.config`).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

#: pydantic error type -> the type name in ``<key>: expected <name>, got <value>``
_EXPECTED = {
    "int_type": "int", "int_parsing": "int", "int_from_float": "int",
    "float_type": "float", "float_parsing": "float", "string_type": "str",
    "bool_type": "bool", "bool_parsing": "bool", "list_type": "a list",
    "tuple_type": "a list", "dict_type": "a mapping", "dataclass_type": "a mapping",
    "dataclass_args_type": "a mapping", "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
           "less_than_equal": "<="}
_UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")

Loc = Tuple[object, ...]


def key_path(loc: Loc) -> str:
    """``("model", "fanouts", 0) -> "model.fanouts[0]"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def one_line(exc, known_keys: Optional[Callable[[Loc], Sequence[str]]] = None,
             root: str = "config") -> str:
    """The first error of ``exc`` (a ``pydantic.ValidationError``) as one line naming its key.

    ``known_keys(parent_loc)`` (optional) lists the valid keys of the mapping at
    ``parent_loc``; unknown-key errors then end with ``; known: [...]``. ``root`` names the
    top-level mapping in messages about it (``config: unknown key(s) [...]``).
    """
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc = tuple(err["loc"])
    path, kind, ctx, value = key_path(loc), err["type"], err.get("ctx") or {}, err.get("input")
    where = path or root
    if kind in _UNKNOWN:
        parent = loc[:-1]
        names = sorted({str(e["loc"][-1]) for e in errors
                        if e["type"] in _UNKNOWN and tuple(e["loc"][:-1]) == parent})
        known = f"; known: {sorted(known_keys(parent))}" if known_keys else ""
        return f"{key_path(parent) or root}: unknown key(s) {names}{known}"
    if kind in _EXPECTED:
        return f"{where}: expected {_EXPECTED[kind]}, got {_short(value)}"
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        return f"{where} must be {_BOUNDS[kind]} {bound}, got {_short(value)}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        one_of = "one of " if "," in expected else ""
        return f"{where} must be {one_of}{expected}, got {_short(value)}"
    if kind == "missing":
        return f"{where}: missing"
    if kind in ("value_error", "assertion_error"):
        msg = str(ctx.get("error", err["msg"]))
        return f"{path} {msg}" if path else msg
    return f"{where}: {err['msg']}"
