"""The search for real, on CPU (issue 18): one Optuna study per shot count on one local Ray cluster and one MLflow
parent run, a diverged (NaN) trial recorded as failed, and ``--confirm 2``: each study's best configuration and the
tuned baseline's re-trained with two fresh seeds and scored on the test tomograms only. Real Ray, Tune, Train,
Optuna and SQLite MLflow; tiny-v1 data, 6 iterations; 12 Train-in-Tune trials (~2-3 min on 2 cores)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _helpers import mlflow_runs

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]
SHOTS = (1, 2)  # tiny-v1 at (32, 64, 64) labels 2-3 particles of each class
KEYS = {"shots", "method", "trials", "best_val_f1", "best_config", "test_f1", "test_ci95", "paired_gain_vs_df",
        "paired_ci95"}


def tiny(dataset: str) -> dict:
    return {"data.dataset": dataset, "data.patch": 16, "model.channels": [8, 12, 16], "train.iterations": 6,
            "train.eval_every": 3, "train.batch_size": 2, "train.device": "cpu", "detect.min_size": 10}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    from sasi.simulate import get_recipe, simulate_dataset

    recipe = get_recipe("tiny-v1")
    out = tmp_path_factory.mktemp("search") / "tiny"
    simulate_dataset(out, replace(recipe.simulation, shape=(32, 64, 64)), recipe.splits, seed=0, recipe=recipe.name,
                     progress=False)
    return str(out)



def baseline_folder(folder: Path, dataset: str) -> Path:
    """An earlier df-cc3d search's folder, as ``sasi tune`` leaves it (only search.json is read)."""
    from sasi.config import to_dict
    from sasi.presets import preset_config

    studies = [{"shots": n, "method": "df-tiny", "trials": 1, "best_val_f1": 0.1, "best_config": {"train.lr": 3e-3},
                "config": to_dict(preset_config("df-cc3d", {**tiny(dataset), "data.shots": n, "train.lr": 3e-3,
                                                            "data.dataset": str(Path(dataset).resolve())}))}
               for n in SHOTS]
    folder.mkdir(parents=True)
    (folder / "search.json").write_text(json.dumps({"name": "df-tiny", "studies": studies}))
    return folder


def test_search_per_shot_count_with_failed_trial_and_confirmation(ray_session, data, tmp_path):
    import optuna
    from typer.testing import CliRunner

    from sasi.cli import _expand_lists, app

    space = tmp_path / "tiny-core.yaml"
    # each study tries these two first: lr inf makes the loss NaN at the first report, 0.003 trains
    space.write_text(yaml.safe_dump({
        "name": "tiny-core", "preset": "df-cc3d", "base": tiny(data),
        "parameters": {"train.lr": {"type": "choice", "values": [0.003, float("inf")]},
                       "loss.dice_weight": {"type": "choice", "values": [5.0, 20.0]}},
        "start": [{"train.lr": float("inf"), "loss.dice_weight": 5.0}, {"train.lr": 0.003, "loss.dice_weight": 20.0}]}))
    storage = tmp_path / "runs"
    args = ["tune", str(space), "--shots", *map(str, SHOTS), "--trials", "2", "--confirm", "2",
            "--baseline", str(baseline_folder(tmp_path / "df-tiny", data)), "--storage", str(storage),
            "--gpus-per-trial", "auto", "--scheduler", "none"]
    result = CliRunner().invoke(app, _expand_lists(args))
    assert result.exit_code == 0, result.output + repr(result.exception)

    summary = json.loads((storage / "tiny-core" / "search.json").read_text())
    assert f"summary:{storage / 'tiny-core' / 'search.json'}" in "".join(result.output.split())  # the file to keep
    studies = {(s["method"], s["shots"]): s for s in summary["studies"]}
    assert set(studies) == {(m, n) for m in ("tiny-core", "df-tiny") for n in SHOTS}
    for n in SHOTS:
        mine, base = studies[("tiny-core", n)], studies[("df-tiny", n)]
        assert KEYS <= set(mine) and KEYS <= set(base)
        assert mine["trials"] == 2 and mine["failed"] == 1 and mine["completed"] == 1
        assert mine["best_config"]["train.lr"] == 0.003 and 0 <= mine["best_val_f1"] <= 1
        assert 0 <= mine["test_f1"] <= 1 and mine["test_ci95"] is not None and len(mine["test_f1_per_seed"]) == 2
        assert mine["paired_gain_vs_df"] == pytest.approx(mine["test_f1"] - base["test_f1"])
        assert base["paired_gain_vs_df"] is None
    seeds = summary["confirm_seeds"]
    assert len(seeds) == 2 and 0 not in seeds  # fresh: the search trained and drew particles with seed 0

    client, runs = mlflow_runs(f"sqlite:///{storage.resolve()}/mlflow.db")
    parents = [r for r in runs if r.data.tags.get("sasi.role") == "suite"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("sasi.role") == "trial"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    search = [r for r in children if r.data.tags.get("sasi.phase") == "search"]
    confirm = [r for r in children if r.data.tags.get("sasi.phase") == "confirm"]
    assert len(search) == 4 and len(confirm) == 2 * 2 * 2  # (method, baseline) × N × seeds
    assert sorted(r.data.tags["shots"] for r in search) == ["1", "1", "2", "2"]
    failed = [r for r in search if r.info.status == "FAILED"]
    assert len(failed) == 2 and all("loss became" in r.data.tags["sasi.error"] for r in failed)
    assert all(not any(k.startswith("test_") for k in r.data.metrics) for r in search)  # search never sees test
    test_names = {"test_00", "test_01"}
    for run in confirm:
        assert run.info.status == "FINISHED" and "test_class_f1" in run.data.metrics
        picks = pd.read_parquet(client.download_artifacts(run.info.run_id, "predictions.parquet", str(tmp_path)))
        assert set(picks["tomogram"]) <= test_names
    metrics = parents[0].data.metrics
    assert {f"confirm/paired_gain.tiny-core.N{n}" for n in SHOTS} <= set(metrics)
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id)} >= {
        "search.json", "search.md", "search_f1_vs_shots.png", "N1", "N2"}

    frame = pd.read_parquet(client.download_artifacts(parents[0].info.run_id, "N1/results.parquet", str(tmp_path)))
    assert sorted(frame["status"]) == ["completed", "failed"]
    assert "loss became" in frame.loc[frame["status"] == "failed", "error"].iloc[0]
    study = optuna.load_study(study_name="tiny-core-N1", storage=f"sqlite:///{storage.resolve()}/tiny-core-N1-optuna.db")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL"]
    report = (storage / "tiny-core" / "report" / "report.md").read_text()
    assert "Search per shot count" in report and "search_f1_vs_shots" in report


def test_search_in_parts_warm_starts_from_the_earlier_part(ray_session, data, tmp_path):
    """A search split over two sessions: the second part counts the first's trials towards --trials, runs only
    the rest, and its summary and Optuna study hold both; a part with nothing left to run trains nothing."""
    import optuna
    from typer.testing import CliRunner

    from sasi.cli import _expand_lists, app

    space = tmp_path / "parts.yaml"
    space.write_text(yaml.safe_dump({"name": "parts", "preset": "df-cc3d", "base": tiny(data),
                                     "parameters": {"train.lr": {"type": "choice", "values": [0.003, 0.001]}}}))

    def part(folder: str, trials: int, *more: str) -> dict:
        args = ["tune", str(space), "--shots", "1", "--trials", str(trials), "--scheduler", "none",
                "--storage", str(tmp_path / folder), *more]
        result = CliRunner().invoke(app, _expand_lists(args))
        assert result.exit_code == 0, result.output + repr(result.exception)
        return json.loads((tmp_path / folder / "parts" / "search.json").read_text())["studies"][0]

    first = part("part1", 1)
    second = part("part2", 2, "--warm-start", str(tmp_path / "part1"))
    assert first["trials"] == 1 and first["warm_started"] == 0
    assert second["trials"] == 2 and second["warm_started"] == 1 and second["completed"] == 2
    assert second["best_val_f1"] >= first["best_val_f1"]  # the best of both parts
    assert second["cost"]["trials_timed"] == 2 and 1 <= second["cost"]["trials_to_target"] <= 2  # the mirror kept the time
    study = optuna.load_study(study_name="parts-N1", storage=f"sqlite:///{tmp_path}/part2/parts-N1-optuna.db")
    assert len(study.trials) == 2  # carried over, so a third part can start from this one alone
    _, runs = mlflow_runs(f"sqlite:///{tmp_path}/part2/mlflow.db")
    assert len([r for r in runs if r.data.tags.get("sasi.phase") == "search"]) == 1  # only the new trial ran here
    third = part("part3", 2, "--warm-start", str(tmp_path / "part2"))
    assert third["trials"] == 2 and third["warm_started"] == 2 and third["best_config"] == second["best_config"]
    assert "the search summary only" in (tmp_path / "part3" / "parts" / "report" / "report.md").read_text()
    late = part("late", 4, "--warm-start", str(tmp_path / "part2"), "--start-within", "0.001")
    assert late["trials"] == 2 and late["best_config"] == second["best_config"]  # past its start deadline: none started
    result = CliRunner().invoke(app, _expand_lists(["tune", str(space), "--shots", "1", "--trials", "1",
                                                    "--storage", str(tmp_path / "part4"), "--warm-start",
                                                    str(tmp_path / "nowhere")]))
    assert result.exit_code != 0 and "no Optuna study 'parts-N1'" in str(result.exception)
    assert not list((tmp_path / "part4").iterdir())  # refused before anything started


# ---- no Ray: the pieces -----------------------------------------------------------------------------------

def test_asha_grace_is_the_first_validation_after_a_quarter_of_training_for_every_method():
    from sasi.platform.studies import asha_grace
    from sasi.presets import preset_config

    sasi = preset_config("sasi-faithful", {"train.iterations": 4000, "train.eval_every": 500})
    assert sasi.pretrain.schedule == "initial" and asha_grace(sasi) == 1000  # ISS steps never count as iterations
    df = preset_config("df-cc3d", {"train.iterations": 4000, "train.eval_every": 300})
    assert asha_grace(df) == 1200  # the first validation at or after 25 %
    assert asha_grace(preset_config("df-cc3d", {"train.iterations": 10, "train.eval_every": 0})) == 10


def test_no_trial_starts_after_the_start_deadline():
    """--start-within: past the deadline the searcher says FINISHED (Tune then waits for the running trials)."""
    import time

    from ray.tune.search import Searcher

    from sasi.platform.search_space import parse_search_space
    from sasi.platform.searcher import SasiOptunaSearch

    space = parse_search_space({"name": "s", "preset": "df-cc3d",
                                "parameters": {"train.lr": {"type": "log", "low": 1e-5, "high": 1e-3}}})

    def searcher(deadline: float) -> SasiOptunaSearch:
        return SasiOptunaSearch(space.define_by_run, metric=space.metric, mode=space.mode, start_deadline=deadline)

    assert 1e-5 <= searcher(time.monotonic() + 60).suggest("t1")["train.lr"] <= 1e-3
    assert searcher(time.monotonic() - 1).suggest("t1") == Searcher.FINISHED


def test_auto_packing_counts_detection_tiles():
    from sasi.platform.packing import auto_packing, trial_gb
    from sasi.presets import preset_config

    config = preset_config("sasi")
    assert 10 < trial_gb(config) < 13  # ~0.7 GB training + ~0.9 GB context + ~9 GB detection at tile 256
    assert auto_packing(config, cpus=2, gpus=[]).gpus_per_trial == 0  # CPU machine: CPU trials
    small = auto_packing(config, cpus=64, gpus=[30.0])
    assert small.trials_per_gpu == 2 and small.gpus_per_trial == 0.5  # memory binds: 27 GB / 11.3 GB
    assert auto_packing(config, cpus=64, gpus=[139.0]).trials_per_gpu == 8  # throughput cap
    assert auto_packing(preset_config("sasi", {"detect.tile": 128}), cpus=64, gpus=[30.0]).trials_per_gpu == 5  # 27 GB / 4.5 GB


def test_shots_are_a_condition_not_a_dimension():
    from sasi.errors import SasiError
    from sasi.platform.search_space import parse_search_space

    doc = {"name": "s", "preset": "df-cc3d", "parameters": {"train.lr": {"type": "log", "low": 1e-5, "high": 1e-3}}}
    assert parse_search_space({**doc, "shots": [3, 5, 10]}).shots == (3, 5, 10)
    with pytest.raises(SasiError, match="condition"):
        parse_search_space({**doc, "parameters": {**doc["parameters"], "data.shots": {"type": "choice", "values": [3, 5]}}})
    with pytest.raises(SasiError, match="shots"):
        parse_search_space({**doc, "shots": [0, 5]})
    with pytest.raises(SasiError, match=r"start\[0\]"):
        parse_search_space({**doc, "start": [{"loss.gamma": 2.0}]})  # not a parameter


def test_paired_gain_is_the_mean_of_per_seed_differences():
    from sasi.platform.confirm import _fill, fresh_seeds, summary_frame

    assert fresh_seeds(2, {0}) == [1, 2] and fresh_seeds(3, {1, 2}) == [3, 4, 5]  # none the search used

    studies = [{"method": "m", "shots": 5}, {"method": "df", "shots": 5}]
    frame = pd.DataFrame([{"variant": v, "seed": s, "error": "", "test_class_f1": f} for v, s, f in [
        ("m-N5", 1, 0.6), ("m-N5", 2, 0.5), ("m-N5", 3, 0.7), ("df-N5", 1, 0.5), ("df-N5", 2, 0.5), ("df-N5", 3, 0.5)]])
    summary = {"name": "m", "studies": studies}
    _fill(summary, studies, frame, [1, 2, 3], "df")
    m, df = studies
    assert m["test_f1"] == pytest.approx(0.6) and m["paired_gain_vs_df"] == pytest.approx(0.1)
    assert m["paired_ci95"] == pytest.approx(4.303 * 0.1 / 3 ** 0.5, rel=1e-3)  # t(0.975, 2) · sd / √n
    assert df["paired_gain_vs_df"] is None and df["test_ci95"] == 0
    assert list(summary_frame(summary)["method"]) == ["m", "df"]


def test_search_cost_against_a_full_grid():
    """Trial-hours until the first completed trial within 0.01 of the best, stopped and failed trials included,
    against a grid of every choice × 3 levels per number at the completed trials' mean cost."""
    from sasi.platform.efficiency import grid_points, search_cost
    from sasi.platform.search_space import Parameter

    knobs = [Parameter("infill.mask_rule", "choice", values=("a", "b", "c")), Parameter("train.lr", "log", 1e-5, 1e-3),
             Parameter("detect.threshold", "float", 0.3, 0.7), Parameter("data.patch", "int", 16, 17)]
    assert grid_points(knobs) == 3 * 3 * 3 * 2
    frame = pd.DataFrame({"status": ["stopped", "completed", "failed", "completed", "completed"],
                          "val_class_f1": [0.9, 0.40, None, 0.495, 0.50],  # a stopped trial's early score never counts
                          "time_total_s": [1800.0, 3600.0, 360.0, 3600.0, 3600.0]})
    cost = search_cost(frame, "val_class_f1", "max", grid_trials=54, gpus_per_trial=0.25)
    assert cost["best"] == 0.50 and cost["trials_to_target"] == 4  # 0.495 is within 0.01 of 0.50
    assert cost["trial_hours_to_target"] == pytest.approx(0.5 + 1 + 0.1 + 1)
    assert cost["grid_trial_hours"] == pytest.approx(54.0) and cost["search_vs_grid"] == pytest.approx(2.6 / 54)
    assert cost["gpu_hours_to_target"] == pytest.approx(0.65) and cost["trials_timed"] == 5
    assert search_cost(frame.assign(status="failed"), "val_class_f1", "max", 54, 1.0) == {}
    low = search_cost(frame.assign(val_class_f1=[0.1, 0.30, None, 0.2, 0.205]), "val_class_f1", "min", 54, 1.0)
    assert low["best"] == 0.2 and low["trials_to_target"] == 4
