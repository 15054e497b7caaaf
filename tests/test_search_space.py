"""Search-space YAML: the shipped spaces parse, bad files give one-line errors naming the key (no Ray)."""

from pathlib import Path

import optuna
import pytest

from sasi.errors import SasiError
from sasi.platform.search_space import load_search_space, parse_search_space

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"name": "t", "preset": "sasi", "objective": {"metric": "val_class_f1", "mode": "max"},
        "parameters": {"train.lr": {"type": "log", "low": 1e-5, "high": 1e-3},
                       "consistency.enabled": {"type": "choice", "values": [False, True]},
                       "consistency.weight": {"type": "log", "low": 0.1, "high": 10,
                                              "when": {"consistency.enabled": True}}}}


@pytest.mark.parametrize("name", ["sasi.yaml", "smoke.yaml"])
def test_shipped_spaces_parse(name):
    space = load_search_space(ROOT / "search_spaces" / name)
    assert space.parameters and space.metric == "val_class_f1"


def test_define_by_run_respects_conditions():
    space = parse_search_space(GOOD)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(12):
        trial = study.ask()
        sampled = space.define_by_run(trial)
        assert ("consistency.weight" in sampled) == sampled["consistency.enabled"]
        config = space.config(sampled)
        assert config.train.lr == sampled["train.lr"]
        seen.append(sampled["consistency.enabled"])
        study.tell(trial, 0.0)
    assert set(seen) == {False, True}


def _error(tmp_path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SasiError) as info:
        load_search_space(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_yaml_syntax_error(tmp_path):
    assert "invalid YAML at line" in _error(tmp_path, "name: x\nparameters: {a: 1\n  - b\n")


@pytest.mark.parametrize("body, expected", [
    ("train.learning_rate: {type: log, low: 1.0e-5, high: 1.0e-3}",
     "parameters.train.learning_rate: unknown key 'train.learning_rate'"),
    ("train.lrr: {type: log, low: 1.0e-5, high: 1.0e-3}", "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
    ("train: {type: float, low: 0, high: 1}", "parameters.train: 'train' is a section"),
    ("train.lr: {type: float, low: 0.1, high: 0.01}", "need low < high"),
    ("train.lr: {type: log, low: 0, high: 0.01}", "log parameter needs low > 0"),
    ("train.lr: {type: gaussian, low: 0, high: 1}", "type must be one of"),
    ("train.lr: {type: float, low: a, high: 1}", "train.lr.low: expected a number"),
    ("train.lr: {type: float, low: 0, high: 1, step: 0.1, mean: 3}", "unknown key(s) ['mean']"),
    ("train.batch_size: {type: float, low: 1.5, high: 8}", "parameters.train.batch_size: value 1.5 does not fit"),
    ("pretrain.schedule: {type: choice, values: [none, sometimes]}", "value 'sometimes' does not fit"),
    ("consistency.weight: {type: log, low: 0.1, high: 1, when: {consistency.enabled: true}}",
     "not an earlier parameter"),
])
def test_bad_parameters(tmp_path, body, expected):
    assert expected in _error(tmp_path, f"name: x\nparameters:\n  {body}\n")


def test_bad_top_level(tmp_path):
    assert "unknown key(s) ['paramters']" in _error(tmp_path, "name: x\nparamters: {}\n")
    assert "preset: unknown preset" in _error(tmp_path, "name: x\npreset: nope\nparameters: {train.lr: {type: log, low: 1, high: 2}}\n")
    assert "objective" in _error(tmp_path, "name: x\nobjective: {metric: val_class_f1, mode: up}\n"
                                           "parameters: {train.lr: {type: log, low: 1, high: 2}}\n")
