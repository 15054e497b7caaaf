"""Typed dataclass configs that round-trip to YAML, with one-line errors for unknown keys or bad types.

Every change to a config goes through :func:`apply_overrides` with dotted keys (``{"infill.density": 0.3}``):
presets, ablation suites, search spaces and ``--set key=value`` on the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import types
import typing
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import yaml

from sasi.errors import SasiError

T = TypeVar("T")
log = logging.getLogger(__name__)


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


def _nearest(key: str, known: Any) -> str:
    close = difflib.get_close_matches(key, [str(k) for k in known], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def reject_unknown_keys(data: dict[str, Any], known: Any, source: object, what: str = "") -> None:
    """One-line :class:`SasiError` if ``data`` has keys outside ``known``, naming the nearest known key."""
    unknown = sorted(set(data) - set(known), key=str)
    if unknown:
        raise SasiError(f"unknown key(s) {unknown}{what}{_nearest(str(unknown[0]), known)}; known: {sorted(known)}",
                        source)


def from_dict(cls: type[T], data: dict[str, Any] | None, source: object = "config") -> T:
    """Build ``cls`` from a dict, recursing into nested dataclasses; unknown keys are an error."""
    data = data or {}
    if not isinstance(data, dict):
        raise SasiError(f"expected a mapping for {cls.__name__}, got {type(data).__name__}", source)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    reject_unknown_keys(data, fields, source, f" in {cls.__name__}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]  # type: ignore[misc]
    if missing:
        raise SasiError(f"missing key(s) {missing} in {cls.__name__}", source)
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
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except SasiError:
                continue
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


def _field_type(cls: type, key: str) -> Any:
    """The type of dotted ``key`` in dataclass ``cls``, or ``None`` when there is no such field."""
    hint: Any = cls
    for part in key.split("."):
        if not dataclasses.is_dataclass(hint):
            return None
        hint = typing.get_type_hints(hint).get(part)
    return hint


def config_keys(cls: type) -> list[str]:
    """Every dotted key of dataclass ``cls`` that holds a value (not a section), e.g. ``train.lr``."""
    keys = []
    for name, hint in typing.get_type_hints(cls).items():
        keys += [f"{name}.{k}" for k in config_keys(hint)] if dataclasses.is_dataclass(hint) else [name]
    return keys


def check_key(cls: type, key: str, source: object = "overrides") -> None:
    """One-line :class:`SasiError` unless ``key`` is a settable dotted key of ``cls``, naming the nearest one."""
    hint = _field_type(cls, key)
    if hint is None:
        raise SasiError(f"unknown key {key!r}{_nearest(key, config_keys(cls))}", source)
    if dataclasses.is_dataclass(hint):
        raise SasiError(f"{key!r} is a section: set its keys, like {key}.{config_keys(hint)[0]}", source)


def parse_assignments(pairs: Iterable[str], source: object = "--set") -> dict[str, Any]:
    """``["train.lr=1e-3", "infill.enabled=false"]`` → ``{"train.lr": 0.001, "infill.enabled": False}``; each
    value is read as a YAML scalar (or flow list: ``model.channels=[8,12,16]``), ``1e-3`` as a number too."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise SasiError(f"expected key=value, got {pair!r}", source)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise SasiError(f"cannot read the value of {pair!r} as YAML", source) from None
        if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value):
            value = float(value)  # YAML 1.1 wants 1.0e-3; people write 1e-3
        out[key.strip()] = value
    return out


def dotted(cls: type, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` with dotted keys only: sections written as nested mappings (``{"train": {"lr": 1e-3}}``)
    become ``{"train.lr": 1e-3}``. Keys are not checked here (see :func:`check_key`)."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        key = str(key)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(_field_type(cls, key)):
            flat.update(dotted(cls, {f"{key}.{k}": v for k, v in value.items()}))
        else:
            flat[key] = value
    return flat


def apply_overrides(config: T, overrides: Mapping[str, Any], source: object = "overrides") -> T:
    """A new ``config`` with each ``{"dotted.key": value}`` set, validated as a whole (types, literals, checks).

    Unknown keys are a one-line :class:`SasiError` naming the nearest valid key. Nested sections are read too.
    """
    cls = type(config)
    tree = to_dict(config)
    for key, value in dotted(cls, overrides).items():
        check_key(cls, key, source)
        *sections, leaf = key.split(".")
        node = tree
        for section in sections:
            node = node[section]
        node[leaf] = value
    return from_dict(cls, tree, source)


def read_overrides(cls: type, mappings: Mapping[str, Any], source: object) -> dict[str, dict[str, Any]]:
    """The override mappings of one file (e.g. ``{"base": ..., "variants.a.overrides": ...}``; ``""`` names
    ``source`` itself) with dotted keys, each checked against ``cls``. The old nested form
    (``train: {lr: 0.001}``) is still read, with one deprecation note per file."""
    out, nested = {}, []
    for where, data in mappings.items():
        at = f"{source}: {where}" if where else source
        if data is not None and not isinstance(data, Mapping):
            raise SasiError(f"expected a mapping of dotted keys (like train.lr: 0.001), got {data!r}", at)
        out[where] = dotted(cls, data or {})
        nested += [k for k in out[where] if k not in (data or {})]
        for key in out[where]:
            check_key(cls, key, at)
    if nested:
        log.warning("%s: nested overrides are deprecated; write dotted keys (like %s: ...)", source, nested[0])
    return out
