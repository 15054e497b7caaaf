"""Search spaces in YAML: dotted SasiConfig paths → an Optuna define-by-run space.

Format (``search_spaces/*.yaml``)::

    name: sasi-search                  # suite name (Tune experiment, MLflow parent run)
    preset: sasi                       # starting configuration (see sasi.presets)
    base: {train.iterations: 2000}     # overrides applied to every trial (dotted SasiConfig keys)
    objective: {metric: val_class_f1, mode: max}
    parameters:
      train.lr: {type: log, low: 1.0e-5, high: 1.0e-3}
      consistency.weight: {type: log, low: 0.1, high: 10, when: {consistency.enabled: true}}
    constraints:                       # optional: reported metric <= max, told to Optuna as constraints
      - {metric: elapsed_s, max: 3600}
    shots: [3, 5, 10]                  # optional: one Optuna study per shot count (a condition, not a dimension)
    start:                             # optional: configurations every study evaluates first (warm start)
      - {train.lr: 1.0e-4}

``type`` is ``float`` | ``log`` | ``int`` | ``choice`` (``values``). ``when`` names earlier parameters and
the value (or list of values) they must take; otherwise the parameter is not sampled and the base value stays.
A ``base`` written as nested mappings (``train: {iterations: 2000}``) is still read, with a deprecation note.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sasi.config import check_key, load_yaml, read_overrides, reject_unknown_keys
from sasi.errors import SasiError
from sasi.presets import PRESETS, preset_config
from sasi.train.config import SasiConfig

TYPES = ("float", "log", "int", "choice")
TOP_KEYS = {"name", "preset", "base", "objective", "parameters", "constraints", "shots", "start"}
PARAM_KEYS = {"type", "low", "high", "step", "values", "when"}


@dataclass(frozen=True)
class Parameter:
    path: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    values: tuple[Any, ...] = ()
    when: dict[str, Any] = field(default_factory=dict)

    def active(self, sampled: dict[str, Any]) -> bool:
        for other, wanted in self.when.items():
            if other not in sampled:
                return False
            allowed = wanted if isinstance(wanted, list) else [wanted]
            if sampled[other] not in allowed:
                return False
        return True

    def suggest(self, trial) -> Any:
        if self.type == "choice":
            return trial.suggest_categorical(self.path, list(self.values))
        if self.type == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1))
        return trial.suggest_float(self.path, self.low, self.high, log=self.type == "log", step=self.step)

    def distribution(self):
        """The Optuna distribution that :meth:`suggest` samples from."""
        import optuna

        if self.type == "choice":
            return optuna.distributions.CategoricalDistribution(list(self.values))
        if self.type == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.type == "log", step=self.step)


@dataclass(frozen=True)
class Constraint:
    metric: str
    max: float


@dataclass
class SearchSpace:
    name: str
    preset: str
    base: dict[str, Any]  # dotted SasiConfig keys
    metric: str
    mode: str
    parameters: list[Parameter]
    constraints: list[Constraint] = field(default_factory=list)
    source: str = ""
    shots: tuple[int, ...] = ()  # one study per shot count (``sasi tune --shots``); () = the base's data.shots
    start: tuple[dict[str, Any], ...] = ()  # parameter values each study tries first (Optuna enqueue_trial)

    def define_by_run(self, trial) -> dict[str, Any]:
        """Optuna define-by-run space: samples the active parameters in file order."""
        sampled: dict[str, Any] = {}
        for p in self.parameters:
            if p.active(sampled):
                sampled[p.path] = p.suggest(trial)
        return sampled

    def config(self, sampled: dict[str, Any] | None = None) -> SasiConfig:
        """preset + base + sampled values (dotted keys), validated."""
        return preset_config(self.preset, {**self.base, **(sampled or {})})

    def with_overrides(self, overrides: dict[str, Any], source: str = "--set") -> SearchSpace:
        """This space with ``overrides`` (dotted keys) added to its base, validated."""
        if not overrides:
            return self
        base = {**self.base, **read_overrides(SasiConfig, {"": overrides}, source)[""]}
        space = replace(self, base=base)
        space.config()
        return space


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SasiError(f"expected a number, got {value!r}", where)
    return float(value)


def _parameter(path: str, body: Any, source: str, earlier: list[str]) -> Parameter:
    where = f"{source}: parameters.{path}"
    check_key(SasiConfig, path, where)
    if not isinstance(body, dict):
        raise SasiError(f"expected a mapping with 'type', got {body!r}", where)
    reject_unknown_keys(body, PARAM_KEYS, where)
    kind = body.get("type")
    if kind not in TYPES:
        raise SasiError(f"type must be one of {list(TYPES)}, got {kind!r}", where)
    when = body.get("when") or {}
    if not isinstance(when, dict):
        raise SasiError(f"'when' must map earlier parameters to values, got {when!r}", where)
    for other in when:
        if other not in earlier:
            raise SasiError(f"'when' refers to {other!r}, which is not an earlier parameter", where)
    if kind == "choice":
        values = body.get("values")
        if not isinstance(values, list) or not values or set(body) & {"low", "high", "step"}:
            raise SasiError("a choice needs a non-empty 'values' list (and no low/high/step)", where)
        return Parameter(path, kind, values=tuple(values), when=when)
    if "values" in body or "low" not in body or "high" not in body:
        raise SasiError(f"a {kind} parameter needs 'low' and 'high' (and no 'values')", where)
    low, high = _number(body["low"], f"{where}.low"), _number(body["high"], f"{where}.high")
    step = _number(body["step"], f"{where}.step") if body.get("step") is not None else None
    if low >= high:
        raise SasiError(f"need low < high, got low={body['low']} high={body['high']}", where)
    if kind == "log" and low <= 0:
        raise SasiError(f"a log parameter needs low > 0, got {body['low']}", where)
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise SasiError(f"an int parameter needs integer bounds, got {body['low']}, {body['high']}", where)
    if step is not None and (step <= 0 or kind == "log"):
        raise SasiError("'step' must be > 0 and cannot be combined with type log", where)
    return Parameter(path, kind, low, high, step, when=when)


def _check_values(space: SearchSpace) -> None:
    """Every bound/value must be a valid setting of its SasiConfig field (types, literals)."""
    for p in space.parameters:
        candidates = list(p.values) if p.type == "choice" else [p.low, p.high]
        for value in candidates:
            value = int(value) if p.type == "int" else value
            try:
                space.config({p.path: value})
            except SasiError as exc:
                raise SasiError(f"value {value!r} does not fit this setting ({exc})",
                                f"{space.source}: parameters.{p.path}") from None


def parse_search_space(data: Any, source: str = "search space") -> SearchSpace:
    """Validate a parsed YAML document; every problem is a one-line :class:`SasiError` naming the key."""
    if not isinstance(data, dict):
        raise SasiError(f"expected a mapping at the top level, got {type(data).__name__}", source)
    reject_unknown_keys(data, TOP_KEYS, source)
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise SasiError(f"'name' must be a non-empty string without '/', got {name!r}", source)
    preset = data.get("preset", "sasi")
    if preset not in PRESETS:
        raise SasiError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}", f"{source}: preset")
    base = read_overrides(SasiConfig, {"base": data.get("base")}, source)["base"]
    objective = data.get("objective") or {"metric": "val_class_f1", "mode": "max"}
    if not isinstance(objective, dict) or set(objective) - {"metric", "mode"} \
            or objective.get("mode", "max") not in ("max", "min") or not isinstance(objective.get("metric", ""), str):
        raise SasiError(f"expected {{metric: NAME, mode: max|min}}, got {objective!r}", f"{source}: objective")
    params = data.get("parameters")
    if not isinstance(params, dict) or not params:
        raise SasiError("'parameters' must be a non-empty mapping of dotted SasiConfig paths", source)
    parsed: list[Parameter] = []
    if "data.shots" in params:
        raise SasiError("data.shots is a condition, not a search dimension (F1 rises with N by construction): "
                        "list the shot counts under 'shots: [3, 5, 10]' or pass --shots; each gets its own study",
                        f"{source}: parameters.data.shots")
    shots = data.get("shots") or []
    if not isinstance(shots, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shots):
        raise SasiError(f"'shots' must be a list of shot counts >= 1, got {shots!r}", f"{source}: shots")
    for path, body in params.items():
        parsed.append(_parameter(str(path), body, source, [p.path for p in parsed]))
    constraints = []
    for i, c in enumerate(data.get("constraints") or []):
        if not isinstance(c, dict) or set(c) != {"metric", "max"} or not isinstance(c["metric"], str):
            raise SasiError(f"expected {{metric: NAME, max: NUMBER}}, got {c!r}", f"{source}: constraints[{i}]")
        constraints.append(Constraint(c["metric"], _number(c["max"], f"{source}: constraints[{i}].max")))
    space = SearchSpace(name, preset, base, objective.get("metric", "val_class_f1"), objective.get("mode", "max"),
                        parsed, constraints, source, tuple(dict.fromkeys(shots)))
    try:
        space.config()
    except SasiError as exc:
        raise SasiError(f"bad base configuration ({exc})", f"{source}: base") from None
    space.start = tuple(_start(data.get("start"), space))
    _check_values(space)
    return space


def _start(points: Any, space: SearchSpace) -> list[dict[str, Any]]:
    """``start:``: a list of mappings from parameters to values, each a valid configuration."""
    if points is None:
        return []
    if not isinstance(points, list):
        raise SasiError(f"'start' must be a list of parameter mappings, got {points!r}", f"{space.source}: start")
    names = {p.path for p in space.parameters}
    for i, point in enumerate(points):
        where = f"{space.source}: start[{i}]"
        if not isinstance(point, dict) or set(point) - names:
            raise SasiError(f"expected a mapping of parameters ({sorted(names)}), got {point!r}", where)
        try:
            space.config(point)
        except SasiError as exc:
            raise SasiError(f"not a valid configuration ({exc})", where) from None
    return [dict(p) for p in points]


def load_search_space(path: str | Path) -> SearchSpace:
    return parse_search_space(load_yaml(path), str(path))
