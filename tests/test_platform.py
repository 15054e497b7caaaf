"""Ray orchestration on CPU with real Ray, Tune, Train, Optuna and MLflow (tiny configs, ~20 s per trial).

Order matters for speed only: the in-process test runs before the module's Ray cluster starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from _helpers import RAY_TEST_ENV, ROOT, mlflow_runs

from sasi.presets import preset_config

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    """tiny-v1 at (32, 64, 64): 1 train, 1 val, 2 test tomograms."""
    from sasi.simulate import get_recipe, simulate_dataset

    recipe = get_recipe("tiny-v1")
    out = tmp_path_factory.mktemp("platform") / "tiny"
    simulate_dataset(out, replace(recipe.simulation, shape=(32, 64, 64)), recipe.splits, seed=0,
                     recipe=recipe.name, progress=False)
    return str(out)


def tiny_overrides(dataset: str, **train) -> dict:
    return {"data": {"dataset": dataset, "shots": 2, "patch": 16}, "model": {"channels": [8, 12, 16]},
            "train": {"iterations": 6, "eval_every": 3, "batch_size": 2, "device": "cpu", **train},
            "detect": {"min_size": 10}}





# ---- no Ray -------------------------------------------------------------------------------------

def test_workers_zero_trains_in_process_without_ray(data, tmp_path):
    import ray

    from sasi.platform.evaluation import evaluate_checkpoint
    from sasi.platform.train import run_training

    config = preset_config("df-cc3d", tiny_overrides(data, iterations=4, eval_every=2))
    outcome = run_training(config, 0, 0, tmp_path, "solo")
    assert not ray.is_initialized()
    assert outcome.checkpoint is not None and (Path(outcome.checkpoint) / "checkpoint.pt").is_file()
    assert outcome.metrics["iteration"] == 4 and "val_class_f1" in outcome.metrics
    report = evaluate_checkpoint(outcome.checkpoint, tmp_path / "eval")
    assert 0 <= report.metrics["test_class_f1"] <= 1 and len(report.history) == 2
    assert {p.name for p in report.files} == {"predictions.parquet", "predictions.star", "slice.png",
                                              "training_curves.png", "per_class_f1.png"}
    again = run_training(config, 0, 0, tmp_path, "solo")  # e.g. a trial restored after its driver was killed
    assert again.checkpoint == outcome.checkpoint and again.metrics["val_class_f1"] == outcome.metrics["val_class_f1"]


def test_suite_file_validation(tmp_path):
    from sasi.errors import SasiError
    from sasi.platform.ablate import load_suite

    suites = sorted((ROOT / "ablations").glob("*.yaml"))
    assert {"smoke.yaml", "components.yaml"} <= {p.name for p in suites}
    for path in suites:
        assert load_suite(path).variants
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nrecipe: tiny-v1\nshots: [3]\nseeds: [0]\nvariants: {a: {preset: nope}}\n")
    with pytest.raises(SasiError, match="unknown preset"):
        load_suite(bad)


def test_ablate_exits_non_zero_when_trials_fail(monkeypatch, tmp_path):
    """`sasi ablate` reports failed trials in one line and exits 1 (the suite itself still completes)."""
    from typer.testing import CliRunner

    import sasi.platform.ablate
    import sasi.platform.runtime
    from sasi.cli import app

    def run_suite(*args, **kwargs):
        return pd.DataFrame({"variant": ["a", "b"], "shots": [3, 3], "seed": [0, 0],
                             "error": ["", "RuntimeError: boom"]}), None

    monkeypatch.setattr(sasi.platform.ablate, "run_suite", run_suite)
    monkeypatch.setattr(sasi.platform.runtime, "init_ray", lambda *a, **k: None)
    # --storage in tmp: the pre-flight simulates the suite's data there, not into the checkout's runs/ray
    result = CliRunner().invoke(app, ["ablate", str(ROOT / "ablations" / "smoke.yaml"), "--storage", str(tmp_path)])
    assert result.exit_code != 0
    assert "1 of 2 trials failed (first: b, 3 shots, seed 0: RuntimeError: boom)" in str(result.exception)


def test_suite_worker_resources_and_concurrency(tmp_path, monkeypatch):
    import ray

    from sasi.errors import SasiError
    from sasi.platform.ablate import load_suite
    from sasi.platform.runtime import trial_resources

    head = "name: r\nrecipe: tiny-v1\nshots: [3]\nseeds: [0, 1]\nvariants: {a: {preset: df-cc3d}}\n"
    path = tmp_path / "r.yaml"
    path.write_text(head + "resources: {per_worker: {CPU: 2, fake_gpu: 1}, max_concurrent: 3}\n")
    assert load_suite(path).resources.per_worker == {"CPU": 2.0, "fake_gpu": 1.0}
    for bad, match in [("{per_worker: {fake_gpu: -1}}", "amounts >= 0"),
                       ("{gpus_per_worker: 1, per_worker: {GPU: 1}}", "give GPUs once"),
                       ("{max_concurrent: 0}", "max_concurrent must be >= 1"), ("{workers: 0}", "workers must be")]:
        path.write_text(head + f"resources: {bad}\n")
        with pytest.raises(SasiError, match=match):
            load_suite(path)
    # head with CPU 0 and no workers yet: never 0 trials at once
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 0.0})
    res = trial_resources(1, 0, {"CPU": 1, "fake_gpu": 1}, trials=4)
    assert res.worker == {"CPU": 1.0, "fake_gpu": 1.0} and res.extra == {"fake_gpu": 1.0} and res.max_concurrent == 4
    assert trial_resources(1, 0, {"fake_gpu": 1}, max_concurrent=2, trials=4).max_concurrent == 2
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 0.0, "train_driver": 8.0})
    res = trial_resources(1, 0, {"fake_gpu": 1}, trials=4)
    assert res.driver == {"CPU": 0.0, "train_driver": 1.0} and res.max_concurrent == 8
    inline = trial_resources(1, 0, {"fake_gpu": 1}, trials=4, inline=True)  # the trial actor holds the worker's share
    assert inline.inline and inline.driver == inline.worker == {"CPU": 1.0, "fake_gpu": 1.0}
    assert inline.reuse_actors and not res.reuse_actors  # Tune reuses the actors of inline trials only
    monkeypatch.setenv("SASI_REUSE_ACTORS", "0")
    assert not inline.reuse_actors
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 2.0})
    assert trial_resources(1, 0).max_concurrent == 8 and trial_resources(1, 1).max_concurrent == 2
    assert trial_resources(1, 0.25, inline=True).max_concurrent == 8  # 4 per GPU; no driver CPU share on top
    assert not trial_resources(2, 1, inline=True).inline  # several workers: a Train worker group


def test_child_runs_are_reused_by_trial_id(tmp_path):
    from sasi.platform import tracking

    uri = tracking.resolve_tracking_uri(None, tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    exp = tracking.ensure_experiment(uri)
    parent = tracking.parent_run(uri, exp, "suite")
    first = tracking.child_run(uri, exp, parent, "t1", "trial")
    tracking.finish(uri, first, "FAILED")
    assert tracking.child_run(uri, exp, parent, "t1", "trial") == first  # a restart reuses it
    assert tracking.parent_run(uri, exp, "suite") == parent
    client, runs = mlflow_runs(uri)
    assert len(runs) == 2 and client.get_run(first).info.status == "RUNNING"


# ---- Ray ----------------------------------------------------------------------------------------

def _space(data: str, name: str, folder: Path, **train):
    """A 2-parameter space written as YAML (so a subprocess driver can load it too)."""
    import yaml

    from sasi.platform.search_space import load_search_space

    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "preset": "df-cc3d", "base": tiny_overrides(data, **train),
        "parameters": {"train.lr": {"type": "log", "low": 1e-4, "high": 1e-2},
                       "loss.dice_weight": {"type": "choice", "values": [5.0, 20.0]}}}))
    return load_search_space(path)


def test_orphaned_placement_groups_are_reaped(ray_session):
    """Groups of a dead driver and long-idle groups go; groups with a live actor stay."""
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from sasi.platform.runtime import reap_orphaned_placement_groups

    address = ray_session.get_runtime_context().gcs_address
    script = (f"import ray, time; ray.init(address={address!r}); from ray.util.placement_group import placement_group;"
              "pg = placement_group([{'CPU': 0.1}]); ray.get(pg.ready()); print(pg.id.hex(), flush=True); time.sleep(600)")
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, **RAY_TEST_ENV})
    from_dead_driver = driver.stdout.readline().strip()
    driver.kill()
    driver.wait()
    idle, used = placement_group([{"CPU": 0.1}]), placement_group([{"CPU": 0.1}])
    ray_session.get([idle.ready(), used.ready()])
    actor = ray_session.remote(num_cpus=0.1)(type("Holder", (), {"ping": lambda self: 1})).options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(used)).remote()
    assert ray_session.get(actor.ping.remote()) == 1
    assert reap_orphaned_placement_groups(idle_s=3600) >= 0  # the dead driver's group goes (if Ray has not yet)

    def state(pg_id: str) -> str | None:
        return placement_group_table().get(pg_id, {}).get("state")

    assert state(from_dead_driver) in ("REMOVED", None)
    assert state(idle.id.hex()) == "CREATED"  # young: kept
    time.sleep(1.5)
    reap_orphaned_placement_groups(idle_s=1)
    assert state(idle.id.hex()) == "REMOVED" and state(used.id.hex()) == "CREATED"
    ray_session.kill(actor)
    remove_placement_group(used)


def test_search_mlflow_layout_and_stopped_trial_is_pruned(ray_session, data, tmp_path):
    import optuna
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    from sasi.platform.tune import run_search

    class StopFirstReporter(FIFOScheduler):
        """Stops whichever trial reports first, as ASHA would stop a weak trial at its first rung."""

        victim = None

        def on_trial_result(self, tune_controller, trial, result):
            self.victim = self.victim or trial.trial_id
            return TrialScheduler.STOP if trial.trial_id == self.victim else TrialScheduler.CONTINUE

    scheduler = StopFirstReporter()
    started = time.perf_counter()
    out = run_search(_space(data, "search", tmp_path), 3, 0.0, scheduler, str(tmp_path))
    print(f"3-trial search: {time.perf_counter() - started:.1f} s")
    uri = f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    client, runs = mlflow_runs(uri)
    parents = [r for r in runs if r.data.tags.get("sasi.role") == "suite"]
    children = [r for r in runs if r.data.tags.get("sasi.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(children) == 3
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    status = {c.data.tags["ray.trial_id"]: c.info.status for c in children}
    assert status.pop(scheduler.victim) == "KILLED" and set(status.values()) == {"FINISHED"}
    assert len({c.data.tags["sasi.process"] for c in children}) < 3  # a later trial reused an actor, and passed
    done = [c for c in children if c.info.status == "FINISHED"]
    for run in done:
        assert {"train.lr", "sampled.train.lr", "data.shots"} <= set(run.data.params)
        assert {"git_sha", "version.ray", "checkpoint", "seed"} <= set(run.data.tags)
        assert {"val_class_f1", "train_loss"} <= set(run.data.metrics)
        assert not any(k.startswith("test_") for k in run.data.metrics)  # a search sees the validation tomogram only
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
            "config.yaml", "predictions.parquet", "predictions.star", "slice.png", "training_curves.png"}
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path.resolve()}/search-optuna.db")
    states = {t.user_attrs["ray_trial_id"]: t.state for t in study.trials}
    assert states.pop(scheduler.victim) == optuna.trial.TrialState.PRUNED
    assert set(states.values()) == {optuna.trial.TrialState.COMPLETE}
    assert len(out.results) == 3 and out.best_metrics["trial_completed"] == 1.0


def test_failed_worker_is_retried_from_checkpoint(ray_session, data, tmp_path):
    from sasi.platform import tracking
    from sasi.platform.train import run_training

    config = preset_config("df-cc3d", tiny_overrides(data, eval_every=0, checkpoint_every=2))
    uri = tracking.resolve_tracking_uri(None, tmp_path)
    run_id = tracking.parent_run(uri, tracking.ensure_experiment(uri), "retry")
    marker = tmp_path / "failed-once"
    outcome = run_training(config, 1, 0, tmp_path, "retry", uri, run_id, max_failures=1, fail_once=str(marker))
    assert marker.exists()  # the injected failure happened
    state = torch.load(Path(outcome.checkpoint) / "checkpoint.pt", weights_only=False)
    assert state["step"] == 6
    client, _ = mlflow_runs(uri)
    steps = [m.step for m in client.get_metric_history(run_id, "iteration")]
    assert steps == [2, 4, 6]  # resumed at 2; a restart from scratch would log step 2 twice


def test_resume_after_killed_driver_has_no_duplicate_runs(ray_session, data, tmp_path):
    from sasi.platform.tune import run_search

    space = _space(data, "resume", tmp_path, checkpoint_every=3)
    script = (f"import ray; ray.init(address={ray_session.get_runtime_context().gcs_address!r});"
              "from sasi.platform.search_space import load_search_space;"
              "from sasi.platform.tune import run_search;"
              f"run_search(load_search_space({space.source!r}), 2, 0.0, None, {str(tmp_path)!r})")
    driver = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, **RAY_TEST_ENV},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not list(tmp_path.glob("resume-*/checkpoint_*")) and time.time() < deadline:
        time.sleep(1)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert list(tmp_path.glob("resume-*/checkpoint_*")), "the driver never reached a checkpoint"
    # Ray frees the killed driver's trials by itself, usually within seconds; `--resume` also removes the
    # placement groups of dead drivers (sasi.platform.runtime.reap_orphaned_placement_groups) before restoring.
    deadline = time.time() + 30
    while ray_session.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(2)
    if ray_session.available_resources().get("CPU", 0) < 2:
        from ray.util.state import list_actors, list_placement_groups

        address = ray_session.get_runtime_context().gcs_address
        print("still held 30 s after the kill:", ray_session.available_resources(),
              [(a.class_name, a.job_id) for a in list_actors(address=address) if a.state == "ALIVE"],
              [(g.creator_job_id, g.state) for g in list_placement_groups(address=address)], flush=True)
    run_search(space, 2, 0.0, None, str(tmp_path), resume=True)
    _, runs = mlflow_runs(f"sqlite:///{tmp_path.resolve()}/mlflow.db")
    children = [r for r in runs if r.data.tags.get("sasi.role") == "trial"]
    ids = [r.data.tags["ray.trial_id"] for r in children]
    assert len(ids) == len(set(ids)) == 2
    assert {r.info.status for r in runs} == {"FINISHED"}
