"""Reading a run config: YAML files (with ``base:`` chains), dotted overrides, one-line errors."""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import pydantic
import yaml

from partition.errors import one_line

from .base import ConfigError
from .run import RunConfig


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice (PyYAML keeps the
    last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as ``line L column C: problem`` (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` with duplicate keys refused; errors are one :class:`ConfigError` line
    starting with ``where``."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({_yaml_problem(exc)})") from None


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict, in place.

    Raises :class:`ConfigError` naming the override if it is not ``key=value``, its value is
    not valid YAML, or a part of its key is a value rather than a section.
    """
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r}: empty key part in {key!r}")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {p!r} is not a section")
        node[parts[-1]] = parse_yaml(raw, f"override {item!r}")
    return data


def _merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: Path, _seen: Sequence[Path] = ()) -> Dict[str, Any]:
    """A config file as a dict, with its ``base:`` chain merged in (see :mod:`lmgnn_dist.config`).

    Raises FileNotFoundError / ConfigError naming the file (missing, a folder, not UTF-8
    text, empty or only comments or ``{}`` -- all defaults is never what a file meant --,
    invalid YAML, a duplicate key, not a mapping, a ``base`` that is not a file name, or a
    ``base`` cycle).
    """
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a config file")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: 'base' files form a cycle")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.object[exc.start]:#04x} "
                          f"at offset {exc.start}); a config is YAML text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    data = parse_yaml(text, str(path))
    if data is None or data == {}:
        raise ConfigError(f"{path}: empty config (no keys)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base must be a file name, got {base!r}")
    return _merge(read_yaml(path.parent / base, [*_seen, path.resolve()]), data)


def _known_keys(loc) -> Sequence[str]:
    """Field names of the section at ``loc`` (a pydantic error location) of :class:`RunConfig`."""
    cls = RunConfig
    for part in loc:
        cls = typing.get_type_hints(cls).get(part)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            return []
    return [f.name for f in dataclasses.fields(cls)]


def from_dict(data: Dict[str, Any]) -> RunConfig:
    """Build and check a :class:`RunConfig` from nested dicts.

    Raises :class:`ConfigError` with one line naming the first bad key (unknown key, wrong
    type, a value outside its rule, or a cross-section rule).
    """
    try:
        return pydantic.TypeAdapter(RunConfig).validate_python(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(one_line(exc, _known_keys)) from None


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a :class:`RunConfig` from YAML (optional) plus dotted overrides, and validate it.

    Raises
    ------
    ConfigError naming the file and key on unknown keys, wrong types, values outside their
        rules, invalid combinations, duplicate YAML keys or invalid YAML (one line).
    FileNotFoundError if ``path`` does not exist.
    """
    data: Dict[str, Any] = read_yaml(Path(path)) if path else {}
    try:
        apply_overrides(data, overrides)
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path or '<overrides>'}: {exc}") from None


def to_dict(cfg: RunConfig) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: RunConfig) -> str:
    """``cfg`` as YAML text (loadable by :func:`load_config`), keys in field order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def dump_config(cfg: RunConfig, path: str) -> None:
    """Write ``cfg`` as YAML (loadable by :func:`load_config`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(to_yaml(cfg))
