"""Hyperparameter search: Optuna TPE through Ray Tune, ASHA early stopping, MLflow parent/child runs.

The searcher's live state stays in memory (so ``Tuner.restore`` is consistent after a driver crash);
:class:`OptunaMirror` copies finished trials into an Optuna SQLite study for browsing
(``optuna-dashboard sqlite:///<storage>/<suite>-optuna.db``).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from sasi.config import to_dict
from sasi.platform.search_space import SearchSpace
from sasi.platform.trial import COMPLETED, CloseRuns, TrialSpec, trial_driver


class SasiOptunaSearch(OptunaSearch):
    """Tells Optuna PRUNED for trials a scheduler stopped early and forwards metric constraints."""

    def __init__(self, *args, constraints: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.constraints = constraints or {}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)  # private in ray 2.60 (pinned)
        if ot_trial is None or trial_id in self._completed_trials or error or not result:
            return super().on_trial_complete(trial_id, result=result, error=error)
        for metric, limit in self.constraints.items():
            if metric in result:
                ot_trial.set_constraint(metric, float(result[metric]) - limit)
        if not result.get(COMPLETED):
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return None
        return super().on_trial_complete(trial_id, result=result, error=error)


def _distribution(p) -> optuna.distributions.BaseDistribution:
    if p.type == "choice":
        return optuna.distributions.CategoricalDistribution(list(p.values))
    if p.type == "int":
        return optuna.distributions.IntDistribution(int(p.low), int(p.high), step=int(p.step or 1))
    return optuna.distributions.FloatDistribution(p.low, p.high, log=p.type == "log", step=p.step)


class OptunaMirror(tune.Callback):
    """Copies each finished trial into an Optuna RDB study (idempotent on the Ray trial id)."""

    def __init__(self, url: str, study: str, space: SearchSpace):
        self.url, self.study_name, self.space = url, study, space

    def _study(self) -> optuna.Study:
        direction = "maximize" if self.space.mode == "max" else "minimize"
        return optuna.create_study(storage=self.url, study_name=self.study_name, direction=direction,
                                   load_if_exists=True)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        study = self._study()
        if any(t.user_attrs.get("ray_trial_id") == trial.trial_id for t in study.get_trials(deepcopy=False)):
            return
        result = trial.last_result or {}
        params = {p.path: trial.config[p.path] for p in self.space.parameters if p.path in trial.config}
        dists = {p.path: _distribution(p) for p in self.space.parameters if p.path in params}
        value = result.get(self.space.metric)
        state = optuna.trial.TrialState.COMPLETE if result.get(COMPLETED) and value is not None \
            else optuna.trial.TrialState.PRUNED
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=value if state.name == "COMPLETE" else None, state=state,
            user_attrs={"ray_trial_id": trial.trial_id}))


@dataclass
class SearchOutcome:
    best_config: dict[str, Any]
    best_metrics: dict[str, Any]
    results: Any  # pandas.DataFrame, one row per trial
    path: str


def run_search(space: SearchSpace, trials: int, gpus_per_trial: float, scheduler: str | Any | None,
               storage: str, tracking_uri: str | None = None, resume: bool = False, *,
               workers_per_trial: int = 1, seed: int = 0, optuna_db: bool = True) -> SearchOutcome:
    """Run (or ``resume``) a Tune search over ``space``; the caller has connected to Ray.

    ``scheduler``: ``"asha"`` (on the ``iteration`` metric, rungs from ``train.eval_every``), ``None``, or
    any Tune ``TrialScheduler``.
    """
    from ray.tune.schedulers import ASHAScheduler

    from sasi.platform import tracking
    from sasi.platform.runtime import trial_resources

    storage = storage if tracking.is_remote(storage) else str(Path(storage).resolve())
    uri = tracking.resolve_tracking_uri(tracking_uri, storage)
    experiment = tracking.ensure_experiment(uri)
    parent = tracking.parent_run(uri, experiment, space.name, {"kind": "search", "space": space.source})
    tracking.log_params(uri, parent, {"trials": trials, "gpus_per_trial": gpus_per_trial, "seed": seed,
                                      "scheduler": scheduler or "none", "preset": space.preset})
    base = to_dict(space.config())
    if not tracking.is_remote(base["data"]["dataset"]):
        base["data"]["dataset"] = str(Path(base["data"]["dataset"]).resolve())
    res = trial_resources(workers_per_trial, gpus_per_trial / max(1, workers_per_trial))
    spec = TrialSpec(space.name, storage, uri, experiment, parent, base=base, workers=res.workers,
                     gpus_per_worker=res.worker.get("GPU", 0.0), cpus_per_worker=res.worker["CPU"])
    trainable = tune.with_resources(tune.with_parameters(trial_driver, spec=spec), res.driver)
    path = f"{storage.rstrip('/')}/{space.name}"
    callbacks: list[tune.Callback] = [CloseRuns(uri, experiment)]
    if optuna_db and not tracking.is_remote(storage):
        callbacks.append(OptunaMirror(f"sqlite:///{storage}/{space.name}-optuna.db", space.name, space))
    if resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable, resume_errored=True, restart_errored=False,
                                   resume_unfinished=True)
    else:
        iterations = int(base["train"]["iterations"])
        asha = ASHAScheduler(time_attr="iteration", max_t=iterations + 1,
                             grace_period=max(1, int(base["train"]["eval_every"]) or iterations),
                             reduction_factor=2) if scheduler == "asha" else scheduler
        searcher = SasiOptunaSearch(space.define_by_run, metric=space.metric, mode=space.mode,
                                    sampler=optuna.samplers.TPESampler(seed=seed),
                                    constraints={c.metric: c.max for c in space.constraints})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=asha, metric=space.metric,
                                        mode=space.mode, num_samples=trials,
                                        max_concurrent_trials=res.max_concurrent),
            run_config=tune.RunConfig(name=space.name, storage_path=storage, callbacks=callbacks,
                                      failure_config=tune.FailureConfig(max_failures=1)),
        )
    grid = tuner.fit()
    frame = grid.get_dataframe()
    best = _best(grid, space.metric, space.mode)
    best_metrics = {k: v for k, v in (best.metrics or {}).items() if isinstance(v, (int, float))}
    tracking.log_metrics(uri, parent, {f"best_{k}": v for k, v in best_metrics.items()
                                       if k.startswith(("val_", "test_"))})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.parquet"
        frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).to_parquet(out, index=False)
        tracking.log_artifacts(uri, parent, [out])
    tracking.finish(uri, parent)
    return SearchOutcome(dict(best.config or {}), best_metrics, frame, path)


def _best(grid, metric: str, mode: str):
    """Best trial among those that trained to the end (stopped trials' early scores don't count)."""
    done = [r for r in grid if (r.metrics or {}).get(COMPLETED) and (r.metrics or {}).get(metric) is not None]
    if not done:
        return grid.get_best_result(metric, mode, filter_nan_and_inf=True)
    sign = 1 if mode == "max" else -1
    return max(done, key=lambda r: sign * r.metrics[metric])


def default_storage() -> str:
    return os.environ.get("SASI_STORAGE") or str(Path("runs/ray").resolve())
