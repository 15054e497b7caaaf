"""Eight trials logging to one SQLite MLflow store at once, as packed Tune trials do: no "database is locked",
no lost metric, no duplicated run."""

from __future__ import annotations

import multiprocessing as mp

from _helpers import mlflow_runs

WRITERS, STEPS = 8, 25


def _trial(args: tuple[str, str, str, int]) -> str:
    """One trial's whole MLflow life; returns the error text, or "" when every call went through."""
    uri, experiment, parent, index = args
    from sasi.platform import tracking

    try:
        run = tracking.child_run(uri, experiment, parent, f"trial-{index}", f"trial {index}", {"index": index})
        tracking.log_params(uri, run, {"train.lr": 1e-3 * (index + 1), "seed": index})
        for step in range(STEPS):
            tracking.log_metrics(uri, run, {"train_loss": 1.0 / (step + 1), "val_class_f1": step / STEPS}, step=step)
        tracking.set_tags(uri, run, {"checkpoint": f"ckpt-{index}"})
        tracking.finish(uri, run)
        return ""
    except Exception as exc:  # noqa: BLE001 - the test reports every failure
        return f"trial {index}: {type(exc).__name__}: {exc}"


def test_eight_concurrent_writers_lose_nothing(tmp_path):
    from sasi.platform import tracking

    uri = tracking.resolve_tracking_uri(None, tmp_path)
    experiment = tracking.ensure_experiment(uri)
    parent = tracking.parent_run(uri, experiment, "concurrency")
    with mp.get_context("spawn").Pool(WRITERS) as pool:
        errors = [e for e in pool.map(_trial, [(uri, experiment, parent, i) for i in range(WRITERS)]) if e]
    assert errors == []
    client, runs = mlflow_runs(uri)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent]
    assert len(children) == WRITERS
    assert {r.info.status for r in children} == {"FINISHED"}
    for run in children:
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == STEPS
