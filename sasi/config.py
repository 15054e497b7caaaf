"""Typed dataclass configs that round-trip to YAML, with one-line errors for unknown keys or bad types."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sasi.errors import SasiError

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a (nested) dataclass config; tuples become lists."""
    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(config)


def reject_unknown_keys(data: dict[str, Any], known: Any, source: object, what: str = "") -> None:
    """One-line :class:`SasiError` if ``data`` has keys outside ``known``."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SasiError(f"unknown key(s) {unknown}{what}; known: {sorted(known)}", source)


def from_dict(cls: type[T], data: dict[str, Any] | None, source: object = "config") -> T:
    """Build ``cls`` from a dict, recursing into nested dataclasses; unknown keys are an error."""
    data = data or {}
    if not isinstance(data, dict):
        raise SasiError(f"expected a mapping for {cls.__name__}, got {type(data).__name__}", source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    reject_unknown_keys(data, fields, source, f" in {cls.__name__}")
    kwargs = {name: _coerce(hints[name], value, f"{source}: {name}") for name, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except SasiError as exc:
                errors.append(str(exc))
        raise SasiError(f"bad value {value!r}", where)
    if origin is typing.Literal:
        if value not in args:
            raise SasiError(f"must be one of {list(args)}, got {value!r}", where)
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise SasiError(f"expected a list, got {value!r}", where)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise SasiError(f"expected {len(args)} values, got {len(value)}", where)
            return tuple(_coerce(a, v, where) for a, v in zip(args, value))
        item = args[0] if args else Any
        seq = [_coerce(item, v, where) for v in value]
        return tuple(seq) if origin is tuple else seq
    if origin is dict:
        if not isinstance(value, dict):
            raise SasiError(f"expected a mapping, got {value!r}", where)
        return {k: _coerce(args[1], v, where) for k, v in value.items()} if args else dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SasiError(f"expected a number, got {value!r}", where)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise SasiError(f"expected an integer, got {value!r}", where)
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise SasiError(f"expected true/false, got {value!r}", where)
        return value
    if hint is str:
        if not isinstance(value, str):
            raise SasiError(f"expected a string, got {value!r}", where)
        return value
    return value


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; syntax errors become a one-line :class:`SasiError` with the position."""
    path = Path(path)
    if not path.is_file():
        raise SasiError("file not found", path)
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SasiError(f"invalid YAML{where}: {problem}", path) from None


def load_config(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, load_yaml(path), path)


def save_config(config: Any, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    return path


def deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``overrides`` merged in recursively (nested dicts merge, other values replace)."""
    out = dict(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def dotted_to_nested(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"infill.density": 0.5}`` → ``{"infill": {"density": 0.5}}``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested
