"""What a search's parent run carries at its end, without Ray: an in-memory Optuna study of the finished
trials, parameter importances and parallel coordinates (PNG), the results table and the suite report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

PNG = b"\x89PNG\r\n\x1a\n"
TRIALS = [  # (lr, dice weight, val_class_f1, trained to the end)
    (1e-4, 5.0, 0.30, True), (3e-4, 20.0, 0.45, True), (1e-3, 5.0, 0.60, True), (3e-3, 20.0, 0.62, True),
    (5e-3, 5.0, 0.70, False),  # stopped early: its score counts for nothing
]


@pytest.fixture(scope="module")
def space():
    from sasi.platform.search_space import parse_search_space

    return parse_search_space({"name": "lr-search", "preset": "df-cc3d", "parameters": {
        "train.lr": {"type": "log", "low": 1e-5, "high": 1e-2},
        "loss.dice_weight": {"type": "choice", "values": [5.0, 20.0]}}})


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    """One MLflow store for the module's searches (each its own parent run)."""
    return tmp_path_factory.mktemp("searches")


def results(rows=TRIALS, error: bool = True) -> list[SimpleNamespace]:
    """Tune ``Result``s as the search's ``ResultGrid`` yields them (and one errored trial)."""
    out = [SimpleNamespace(config={"train.lr": lr, "loss.dice_weight": dice}, error=None,
                           metrics={"trial_id": f"t{i}", "val_class_f1": f1, "iteration": 20.0 if done else 10.0,
                                    **({"trial_completed": 1.0, "test_class_f1": f1 - 0.05} if done else {})})
           for i, (lr, dice, f1, done) in enumerate(rows)]
    return out + ([SimpleNamespace(config={"train.lr": 1e-5}, metrics={}, error=RuntimeError("x"))] if error else [])


def frame(grid) -> pd.DataFrame:
    """Like ``ResultGrid.get_dataframe()``: metrics and ``config/<key>`` columns."""
    return pd.DataFrame([{**r.metrics, **{f"config/{k}": v for k, v in r.config.items()}} for r in grid])


def test_study_of_finished_trials(space):
    import optuna

    from sasi.platform.searcher import study_of

    study = study_of(results(), space)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 4 + [optuna.trial.TrialState.PRUNED]
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert study.best_trial.user_attrs["ray_trial_id"] == "t3" and study.best_value == 0.62
    assert study.best_params == {"train.lr": 3e-3, "loss.dice_weight": 20.0}


def test_importances_and_figures(space, tmp_path):
    from sasi.platform.searcher import search_figures, study_of

    importances, files = search_figures(study_of(results(), space), tmp_path, "val_class_f1")
    assert set(importances) == {"train.lr", "loss.dice_weight"} and sum(importances.values()) == pytest.approx(1)
    assert [f.name for f in files] == ["param_importances.png", "parallel_coordinates.png"]
    assert all(f.read_bytes().startswith(PNG) and f.stat().st_size > 5000 for f in files)


@pytest.mark.parametrize(("rows", "why"), [
    (TRIALS[:1] + TRIALS[-1:], "1 complete trial(s), need 2"),
    ([(1e-3, 5.0, 0.3, True), (1e-3, 5.0, 0.4, True)], "no parameter varied"),
])
def test_importances_skipped_with_a_warning(space, tmp_path, caplog, rows, why):
    from sasi.platform.searcher import search_figures, study_of

    assert search_figures(study_of(results(rows), space), tmp_path, "val_class_f1") == ({}, [])
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and why in warned[0]
    assert not list(tmp_path.iterdir())


def test_results_table_best_first(space):
    from sasi.platform.tune import results_table

    table = results_table(frame(results()), space)
    assert list(table.columns) == ["trial", "val_class_f1", "test_class_f1", "iteration", "completed", "train.lr",
                                   "loss.dice_weight"]
    assert list(table["trial"][:5]) == ["t3", "t2", "t1", "t0", "t4"] and pd.isna(table["trial"].iloc[-1])
    assert list(table["completed"]) == [True] * 4 + [False] * 2


def _search_store(storage: Path, space, grid):
    """A search's MLflow parent run and child runs, the way ``sasi tune`` logs them (no training)."""
    from sasi.platform import tracking

    uri = tracking.resolve_tracking_uri(None, storage)
    experiment = tracking.ensure_experiment(uri)
    parent = tracking.parent_run(uri, experiment, space.name, {"kind": "search", "space": "lr.yaml"})
    tracking.log_params(uri, parent, {"trials": len(grid), "gpus_per_trial": 1.0})
    for r in grid[:-1]:
        run = tracking.child_run(uri, experiment, parent, r.metrics["trial_id"], r.metrics["trial_id"],
                                 {"variant": space.name, "shots": 5, "seed": 0})
        tracking.log_params(uri, run, {f"sampled.{k}": v for k, v in r.config.items()})
        tracking.log_metrics(uri, run, {k: v for k, v in r.metrics.items() if k != "trial_id"}, step=20)
        tracking.finish(uri, run)
    tracking.finish(uri, parent)
    return uri, parent


def test_parent_run_carries_the_search_summary(space, storage, tmp_path):
    from mlflow.tracking import MlflowClient

    from sasi.platform.tune import _log_summary
    from sasi.platform.report import publish_quietly

    grid = results()
    uri, parent = _search_store(storage, space, grid)
    _log_summary(uri, parent, grid, frame(grid), space)
    html = publish_quietly(parent, uri, str(storage), space.name)
    assert html == storage / space.name / "report" / "report.html"
    client = MlflowClient(uri)
    assert {a.path for a in client.list_artifacts(parent)} == {
        "results.parquet", "results.md", "param_importances.png", "parallel_coordinates.png", "report"}
    metrics = client.get_run(parent).data.metrics
    assert {"importance/train.lr", "importance/loss.dice_weight", "gpu_hours/lr-search", "gpu_hours/total"} <= set(
        metrics)
    markdown = (html.parent / "report.md").read_text()
    assert "## Search parameters" in markdown and "over seeds" not in markdown
    assert "figures/param_importances.png" in markdown and "figures/parallel_coordinates.png" in markdown
    results_md = Path(client.download_artifacts(parent, "results.md", str(tmp_path)))
    assert "| t3 | 0.62 | 0.57 | 20 | True | 0.003 | 20 |" in results_md.read_text()


def test_search_figures_failure_keeps_the_results_table(space, storage, caplog, monkeypatch):
    from mlflow.tracking import MlflowClient

    from sasi.platform import tune

    def broken(*args):
        raise ValueError("no figure today\nsecond line")

    monkeypatch.setattr(tune, "search_figures", broken)
    grid = results()
    space = replace(space, name="broken-search")
    uri, parent = _search_store(storage, space, grid)
    tune._log_summary(uri, parent, grid, frame(grid), space)
    assert {a.path for a in MlflowClient(uri).list_artifacts(parent)} == {"results.parquet", "results.md"}
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "search figures skipped: ValueError: no figure today"]
