"""Hyperparameter search: Optuna TPE through Ray Tune, ASHA early stopping, MLflow parent/child runs.

The searcher's live state stays in memory (so ``Tuner.restore`` is consistent after a driver crash);
:class:`OptunaMirror` copies finished trials into an Optuna SQLite study for browsing
(``optuna-dashboard sqlite:///<storage>/<suite>-optuna.db``). At the end the search's parent run gets the
results table (``results.parquet``, ``results.md``), parameter importances (metrics ``importance/<param>``,
``param_importances.png``), ``parallel_coordinates.png`` and the suite report (:func:`sasi.platform.report.publish`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from sasi.config import to_dict
from sasi.platform.search_space import SearchSpace
from sasi.platform.trial import COMPLETED, CloseRuns, ReapOrphans, TrialSpec, trial_driver

log = logging.getLogger(__name__)


class SasiOptunaSearch(OptunaSearch):
    """Tells Optuna PRUNED for trials a scheduler stopped early and forwards metric constraints."""

    def __init__(self, *args, constraints: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.constraints = constraints or {}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)  # private in ray 2.60 (pinned)
        if ot_trial is None or trial_id in self._completed_trials or error or not result:
            super().on_trial_complete(trial_id, result=result, error=error)
            return
        for metric, limit in self.constraints.items():
            if metric in result:
                ot_trial.set_constraint(metric, float(result[metric]) - limit)
        if not result.get(COMPLETED):
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


def _direction(space: SearchSpace) -> str:
    return "maximize" if space.mode == "max" else "minimize"


def _frozen_trial(space: SearchSpace, config: dict, result: dict, trial_id: str | None) -> optuna.trial.FrozenTrial:
    """A finished Tune trial for Optuna: COMPLETE if it trained to the end with a score, else PRUNED."""
    params = {p.path: config[p.path] for p in space.parameters if p.path in config}
    dists = {p.path: p.distribution() for p in space.parameters if p.path in params}
    value = result.get(space.metric)
    done = bool(result.get(COMPLETED)) and value is not None
    return optuna.trial.create_trial(
        params=params, distributions=dists, value=value if done else None,
        state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED,
        user_attrs={"ray_trial_id": trial_id})


def study_of(results, space: SearchSpace) -> optuna.Study:
    """An in-memory Optuna study of a search's finished trials (Tune ``Result``s; errored ones left out)."""
    study = optuna.create_study(direction=_direction(space))
    study.add_trials([_frozen_trial(space, r.config or {}, r.metrics or {}, (r.metrics or {}).get("trial_id"))
                      for r in results if not r.error])
    return study


class OptunaMirror(tune.Callback):
    """Copies each finished trial into an Optuna RDB study (idempotent on the Ray trial id)."""

    def __init__(self, url: str, study: str, space: SearchSpace):
        self.url, self.study_name, self.space = url, study, space

    def _study(self) -> optuna.Study:
        return optuna.create_study(storage=self.url, study_name=self.study_name, direction=_direction(self.space),
                                   load_if_exists=True)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        study = self._study()
        if any(t.user_attrs.get("ray_trial_id") == trial.trial_id for t in study.get_trials(deepcopy=False)):
            return
        study.add_trial(_frozen_trial(self.space, trial.config, trial.last_result or {}, trial.trial_id))


def varying_params(study: optuna.Study) -> list[str]:
    """Parameters set in every complete trial that took more than one value; [] (and a warning) when
    importances would mean nothing: fewer than 2 complete trials, or no parameter varied."""
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 2:
        log.warning("parameter importances skipped: %d complete trial(s), need 2", len(done))
        return []
    common = set.intersection(*(set(t.params) for t in done))
    varying = sorted(p for p in common if len({repr(t.params[p]) for t in done}) > 1)
    if not varying:
        log.warning("parameter importances skipped: no parameter varied across the complete trials")
    return varying


def search_figures(study: optuna.Study, folder: Path, metric: str) -> tuple[dict[str, float], list[Path]]:
    """Importances (Optuna's default, PED-ANOVA) of :func:`varying_params`, ``param_importances.png`` and
    ``parallel_coordinates.png`` in ``folder``; nothing when :func:`varying_params` finds none."""
    from sasi.platform import figures

    params = varying_params(study)
    if not params:
        return {}, []
    importances = optuna.importance.get_param_importances(study, params=params)
    return importances, [figures.param_importances(importances, folder / "param_importances.png", metric),
                         figures.parallel_coordinates(study, params, folder / "parallel_coordinates.png", metric)]


def results_table(frame: pd.DataFrame, space: SearchSpace) -> pd.DataFrame:
    """One row per trial, those that trained to the end first, best first: trial ID, scores, sampled parameters."""
    scores = dict.fromkeys((space.metric, "val_class_f1", "test_class_f1", "test_precision", "test_recall", "iteration"))
    columns = {"trial_id": "trial", **{c: c for c in scores}, COMPLETED: "completed",
               **{f"config/{p.path}": p.path for p in space.parameters}}
    table = frame[[c for c in columns if c in frame]].rename(columns=columns)
    if "completed" in table:
        table["completed"] = table["completed"].eq(1.0)
    keys = [c for c in ("completed", space.metric) if c in table]
    ascending = [key == space.metric and space.mode == "min" for key in keys]
    return table.sort_values(keys, ascending=ascending, na_position="last").reset_index(drop=True)


def _results_files(frame: pd.DataFrame, space: SearchSpace, folder: Path) -> list[Path]:
    """``results.parquet`` (Tune's frame) and ``results.md`` (:func:`results_table`)."""
    from sasi.platform.report import Table

    paths = [folder / "results.parquet", folder / "results.md"]
    frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).to_parquet(paths[0], index=False)
    paths[1].write_text(f"# {space.name}: trials, best {space.metric} first\n\n"
                        + Table.of(results_table(frame, space)).markdown())
    return paths


def _log_summary(uri: str, parent: str, grid, frame: pd.DataFrame, space: SearchSpace) -> None:
    """The parent run's results table, importances and figures (these last two best effort)."""
    from sasi.platform import tracking

    def log_figures(folder: Path) -> None:
        importances, files = search_figures(study_of(grid, space), folder, space.metric)
        tracking.log_metrics(uri, parent, {f"importance/{k}": v for k, v in importances.items()})
        tracking.log_artifacts(uri, parent, files)

    with tempfile.TemporaryDirectory() as tmp:
        tracking.log_artifacts(uri, parent, _results_files(frame, space, Path(tmp)))
        tracking.best_effort("search figures", log_figures, Path(tmp))


@dataclass
class SearchOutcome:
    best_config: dict[str, Any]
    best_metrics: dict[str, Any]
    results: Any  # pandas.DataFrame, one row per trial
    path: str
    report: Path | None = None  # report.html (local storage, when it could be written)


def run_search(space: SearchSpace, trials: int, gpus_per_trial: float, scheduler: str | Any | None,
               storage: str, tracking_uri: str | None = None, resume: bool = False, *,
               workers_per_trial: int = 1, seed: int = 0, optuna_db: bool = True, restart: bool = False,
               resume_command: str | None = None) -> SearchOutcome:
    """Run (or ``resume``) a Tune search over ``space``; the caller has connected to Ray.

    SIGINT/SIGTERM stop it cleanly (MLflow runs KILLED, no summary, :class:`~sasi.platform.interrupts.Interrupted`
    names ``resume_command``); ``restart`` detaches the search's old MLflow parent run.

    ``scheduler``: ``"asha"`` (on the ``iteration`` metric, rungs from ``train.eval_every``), ``None``, or
    any Tune ``TrialScheduler``.
    """
    from ray.tune.schedulers import ASHAScheduler

    from sasi.platform import interrupts, tracking
    from sasi.platform.runtime import reap_orphaned_placement_groups, trial_resources
    from sasi.platform.report import publish_quietly

    storage = storage if tracking.is_remote(storage) else str(Path(storage).resolve())
    uri = tracking.resolve_tracking_uri(tracking_uri, storage)
    experiment = tracking.ensure_experiment(uri)
    if restart:
        tracking.retire_parent(uri, experiment, space.name, f"{space.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    parent = tracking.parent_run(uri, experiment, space.name, {"kind": "search", "space": space.source})
    tracking.log_params(uri, parent, {"trials": trials, "gpus_per_trial": gpus_per_trial, "seed": seed,
                                      "scheduler": scheduler or "none", "preset": space.preset})
    resume_command = resume_command or interrupts.command_line(add=("--resume",))
    with interrupts.guarded(uri, experiment, parent, resume_command) as stop:
        base = to_dict(space.config())
        if not tracking.is_remote(base["data"]["dataset"]):
            base["data"]["dataset"] = str(Path(base["data"]["dataset"]).resolve())
        res = trial_resources(workers_per_trial, gpus_per_trial / max(1, workers_per_trial))
        spec = TrialSpec(space.name, storage, uri, experiment, parent, base=base, workers=res.workers,
                         gpus_per_worker=res.worker.get("GPU", 0.0), cpus_per_worker=res.worker["CPU"])
        trainable = tune.with_resources(tune.with_parameters(trial_driver, spec=spec), res.driver)
        path = f"{storage.rstrip('/')}/{space.name}"
        callbacks: list[tune.Callback] = [CloseRuns(uri, experiment), ReapOrphans()]
        if optuna_db and not tracking.is_remote(storage):
            callbacks.append(OptunaMirror(f"sqlite:///{storage}/{space.name}-optuna.db", space.name, space))
        if resume and tune.Tuner.can_restore(path):
            reap_orphaned_placement_groups()
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
        with stop.fit():
            grid = tuner.fit()
        stop.check()
        interrupts.raise_if_all_failed(grid)
        frame = grid.get_dataframe()
        best = _best(grid, space.metric, space.mode)
        best_metrics = {k: v for k, v in (best.metrics or {}).items() if isinstance(v, (int, float))}
        tracking.log_metrics(uri, parent, {f"best_{k}": v for k, v in best_metrics.items()
                                           if k.startswith(("val_", "test_"))})
        _log_summary(uri, parent, grid, frame, space)
        tracking.finish(uri, parent)
    report = publish_quietly(parent, uri, storage, space.name)
    return SearchOutcome(dict(best.config or {}), best_metrics, frame, path, report)


def _best(grid, metric: str, mode: str):
    """Best trial among those that trained to the end (stopped trials' early scores don't count)."""
    done = [r for r in grid if (r.metrics or {}).get(COMPLETED) and (r.metrics or {}).get(metric) is not None]
    if not done:
        return grid.get_best_result(metric, mode, filter_nan_and_inf=True)
    sign = 1 if mode == "max" else -1
    return max(done, key=lambda r: sign * r.metrics[metric])
