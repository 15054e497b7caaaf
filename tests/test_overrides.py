"""One override path: dotted keys through ``apply_overrides`` for presets, suites, searches, trials and ``--set``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sasi.config import apply_overrides, parse_assignments, read_overrides
from sasi.errors import SasiError
from sasi.presets import preset_config
from sasi.train.config import SasiConfig

ROOT = Path(__file__).resolve().parents[1]


def test_apply_overrides_sets_dotted_keys_on_a_copy():
    base = SasiConfig()
    config = apply_overrides(base, {"infill.density": 0.3, "model.channels": [8, 12, 16], "name": "x"})
    assert (config.infill.density, config.model.channels, config.name) == (0.3, (8, 12, 16), "x")
    assert base.infill.density != 0.3 and base.name == "sasi"


def test_apply_overrides_reads_nested_sections_too():
    config = apply_overrides(SasiConfig(), {"train": {"lr": 0.01}, "pretrain": {"contrastive": {"temperature": 0.2}}})
    assert config.train.lr == 0.01 and config.pretrain.contrastive.temperature == 0.2


@pytest.mark.parametrize("overrides, expected", [
    ({"infill.densty": 0.3}, "unknown key 'infill.densty' (did you mean 'infill.density'?)"),
    ({"trian.lr": 0.1}, "(did you mean 'train.lr'?)"),
    ({"infill": 0.3}, "'infill' is a section: set its keys, like infill."),
    ({"train.lr.value": 0.3}, "unknown key 'train.lr.value'"),
    ({"train.lr": "fast"}, "train: lr: expected a number"),
    ({"pretrain.schedule": "sometimes"}, "must be one of"),
])
def test_bad_overrides_are_one_line_errors(overrides, expected):
    with pytest.raises(SasiError) as info:
        apply_overrides(SasiConfig(), overrides, "--set")
    assert expected in str(info.value) and "\n" not in str(info.value) and str(info.value).startswith("--set")


def test_presets_go_through_the_same_path():
    config = preset_config("sasi", {"infill.density": 0.3})
    assert config.name == "sasi" and config.infill.enabled and config.infill.density == 0.3
    assert preset_config("sasi", {"name": "mine"}).name == "mine"
    with pytest.raises(SasiError, match="did you mean 'infill.density'"):
        preset_config("sasi", {"infill.densty": 0.3})


def test_parse_assignments_reads_yaml_scalars():
    assert parse_assignments(["train.lr=1e-3", "infill.enabled=false", "model.channels=[8, 12, 16]",
                              "train.device=cpu", "data.train_tomogram="]) == {
        "train.lr": 0.001, "infill.enabled": False, "model.channels": [8, 12, 16], "train.device": "cpu",
        "data.train_tomogram": None}
    with pytest.raises(SasiError, match="expected key=value"):
        parse_assignments(["train.lr"])


def test_nested_files_are_read_with_one_deprecation_note(caplog):
    with caplog.at_level(logging.WARNING, logger="sasi.config"):
        out = read_overrides(SasiConfig, {"base": {"train": {"lr": 0.01}, "data.patch": 16},
                                          "variants.a.overrides": {"infill": {"enabled": False}}}, "suite.yaml")
    assert out == {"base": {"train.lr": 0.01, "data.patch": 16}, "variants.a.overrides": {"infill.enabled": False}}
    notes = [r.getMessage() for r in caplog.records]
    assert notes == ["suite.yaml: nested overrides are deprecated; write dotted keys (like train.lr: ...)"]
    caplog.clear()
    read_overrides(SasiConfig, {"base": {"train.lr": 0.01}}, "suite.yaml")
    assert not caplog.records


def _old_suite(tmp_path: Path) -> Path:
    path = tmp_path / "old.yaml"
    path.write_text("name: old\nrecipe: tiny-v1\nshots: [3]\nseeds: [0]\nbase: {train: {iterations: 7}}\n"
                    "variants:\n  a: {preset: sasi, overrides: {infill: {density: 0.3}}}\n  b.c: {preset: df-cc3d}\n")
    return path


def test_old_nested_suite_still_runs_the_same_variants(tmp_path, caplog):
    from sasi.platform.ablate import load_suite

    with caplog.at_level(logging.WARNING, logger="sasi.config"):
        suite = load_suite(_old_suite(tmp_path))
    assert len(caplog.records) == 1 and "deprecated" in caplog.records[0].getMessage()
    assert suite.base == {"train.iterations": 7} and suite.variants["a"].overrides == {"infill.density": 0.3}
    configs = suite.with_overrides({"infill.density": 0.5, "train.iterations": 9}).configs("data")
    assert configs["a"]["infill"]["density"] == 0.5 and configs["b.c"]["train"]["iterations"] == 9
    assert suite.configs("data")["a"]["infill"]["density"] == 0.3  # with_overrides left the suite alone


def test_search_space_overrides_reach_its_base():
    from sasi.platform.search_space import load_search_space

    space = load_search_space(ROOT / "search_spaces" / "smoke.yaml")
    changed = space.with_overrides({"train.iterations": 3})
    assert changed.config().train.iterations == 3 and space.config().train.iterations == 10
    with pytest.raises(SasiError, match="did you mean 'train.iterations'"):
        space.with_overrides({"train.iteration": 3})


def test_trial_config_is_variant_plus_grid_plus_sampled():
    from dataclasses import asdict

    from sasi.platform.trial import TrialSpec

    spec = TrialSpec("s", "/tmp", "sqlite://", "0", "p", variants={"a": asdict(preset_config("sasi"))})
    config = spec.trial_config({"variant": "a", "shots": 3, "seed": 2, "train.lr": 0.01})
    assert (config.name, config.data.shots, config.data.fewshot_seed, config.train.seed, config.train.lr) == (
        "a", 3, 2, 2, 0.01)


def test_cli_set_rejects_unknown_keys_with_the_nearest(tmp_path):
    from sasi.cli import app
    from sasi.config import save_config

    config = save_config(SasiConfig(), tmp_path / "config.yaml")
    result = CliRunner().invoke(app, ["train", str(config), "--storage", str(tmp_path / "runs"),
                                      "--set", "train.lr=1e-3", "--set", "train.iteratons=5"])
    assert isinstance(result.exception, SasiError)
    assert "unknown key 'train.iteratons' (did you mean 'train.iterations'?)" in str(result.exception)


def test_recorded_suite_variants_keep_their_meaning_when_a_preset_changes():
    """sasi-faithful took consistency weight 0.1 (issue 17); the variants recorded at weight 1 pin it."""
    from sasi.platform.ablate import load_suite

    configs = load_suite(ROOT / "ablations" / "sasi-consistency-fixes.yaml").configs("data")
    weight = {name: config["consistency"]["weight"] for name, config in configs.items()}
    assert preset_config("sasi-faithful").consistency.weight == weight["sasi-fixed+consistency-weight-0.1"] == 0.1
    assert weight["sasi-fixed"] == weight["sasi-fixed+confident-hard-consistency"] == 1.0
