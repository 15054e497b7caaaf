"""The benchmarks' paired differences pair a run with the baseline of its own dataset, labelled particles and seed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fewshot_pooled import pooled  # noqa: E402


def run(method: str, data_seed: int, seed: int, class_f1: float) -> dict:
    scores = {"class_f1_pooled": class_f1, "localisation_f1_pooled": 0.5}
    return {"method": method, "data_seed": data_seed, "shots": 5, "seed": seed, "modes": {"foreground": scores}}


def test_pairs_stay_within_their_data_seed():
    # the same (N, seed) on two datasets: the method gains +0.1 on each against its own dataset's baseline
    runs = [run("df-cc3d", 0, 0, 0.2), run("df-cc3d", 1, 0, 0.6), run("m", 0, 0, 0.3), run("m", 1, 0, 0.7),
            run("df-cc3d", 0, 1, 0.1), run("m", 0, 1, 0.2), run("df-cc3d", 1, 1, 0.4), run("m", 1, 1, 0.5)]
    (row,) = [r for r in pooled(runs, ["m"], "df-cc3d") if r["metric"] == "class_f1"]
    assert row["pairs"] == 4 and row["wins"] == 4 and row["data_seeds"] == [0, 1]
    assert row["gain"] == pytest.approx(0.1) and row["ci95"] == pytest.approx(0.0, abs=1e-9)


def test_a_method_missing_a_data_seed_is_refused():
    runs = [run("df-cc3d", 0, 0, 0.2), run("df-cc3d", 1, 0, 0.6), run("m", 1, 0, 0.7)]
    with pytest.raises(SystemExit, match="not run on every data seed"):
        pooled(runs, ["m"], "df-cc3d")
