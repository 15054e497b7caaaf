"""Hyperparameter search: Optuna TPE through Ray Tune, ASHA early stopping, MLflow parent/child runs.

One study per shot count (:mod:`sasi.platform.studies`), all on one Ray cluster and under one MLflow parent
run; ``confirm`` then re-trains each study's best configuration with fresh seeds and scores it on the test
tomograms, paired against a tuned baseline (:mod:`sasi.platform.confirm`), and ``<storage>/<space>/search.json``
sums it up. Search trials are scored on the validation tomogram only: the test tomograms are for confirmation.

The searcher's live state stays in memory (so ``Tuner.restore`` is consistent after a driver crash);
:class:`~sasi.platform.searcher.OptunaMirror` copies finished trials into an Optuna SQLite study for browsing
(``optuna-dashboard sqlite:///<storage>/<suite>-optuna.db``). At the end the search's parent run gets the
results table (``results.parquet``, ``results.md``), parameter importances (metrics ``importance/<param>``,
``param_importances.png``), ``parallel_coordinates.png`` and the suite report (:func:`sasi.platform.report.publish`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from ray import tune

from sasi.config import to_dict
from sasi.errors import SasiError
from sasi.platform.efficiency import grid_points, search_cost
from sasi.platform.search_space import SearchSpace
from sasi.platform.searcher import (
    OptunaMirror,
    SasiOptunaSearch,
    finite,
    prior_frame,
    prior_trials,
    search_figures,
    study_of,
)
from sasi.platform.studies import Study
from sasi.platform.trial import COMPLETED, CloseRuns, ReapOrphans, TrialSpec, trial_driver


def results_table(frame: pd.DataFrame, space: SearchSpace) -> pd.DataFrame:
    """One row per trial, those that trained to the end first, best first: trial ID, scores, sampled parameters."""
    scores = dict.fromkeys((space.metric, "val_class_f1", "test_class_f1", "test_precision", "test_recall", "iteration"))
    columns = {"trial_id": "trial", "shots": "shots", "status": "status", **{c: c for c in scores},
               COMPLETED: "completed", **{f"config/{p.path}": p.path for p in space.parameters}, "error": "error"}
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


def _log_summary(uri: str, parent: str, grid, frame: pd.DataFrame, space: SearchSpace,
                 study: str = "", prior: list[optuna.trial.FrozenTrial] | None = None) -> dict[str, float]:
    """The parent run's results table, importances and figures (these last two best effort); with ``study``
    (``N5``) they go under that artifact folder and ``importance/<study>/<param>``. Returns the importances."""
    from sasi.platform import tracking

    key = f"importance/{study}/" if study else "importance/"
    found: dict[str, float] = {}

    def log_figures(folder: Path) -> None:
        importances, files = search_figures(study_of(grid, space, prior), folder, space.metric)
        found.update(importances)
        tracking.log_metrics(uri, parent, {f"{key}{k}": v for k, v in importances.items()})
        tracking.log_artifacts(uri, parent, files, study or None)

    with tempfile.TemporaryDirectory() as tmp:
        tracking.log_artifacts(uri, parent, _results_files(frame, space, Path(tmp)), study or None)
        tracking.best_effort("search figures", log_figures, Path(tmp))
    return found


@dataclass
class StudyOutcome:
    study: Study
    frame: pd.DataFrame  # one row per trial: status, error, scores, config/<param>
    best_config: dict[str, Any] | None  # sampled parameters of the best trial that trained to the end
    best_metrics: dict[str, float]
    full_config: dict[str, Any] | None  # the best trial's whole configuration (nested), for confirmation
    importances: dict[str, float]
    warm_started: int = 0  # trials taken from an earlier part of the search (--warm-start)
    cost: dict[str, Any] = field(default_factory=dict)  # against a full grid (sasi.platform.efficiency)

    def entry(self) -> dict[str, Any]:
        """This study's part of ``search.json`` (confirmation fields filled in later)."""
        status = self.frame["status"] if "status" in self.frame else pd.Series(dtype=str)
        return {"shots": self.study.shots, "method": self.study.method, "study": self.study.name,
                "trials": int(len(self.frame)), "completed": int((status == "completed").sum()),
                "stopped": int((status == "stopped").sum()), "failed": int((status == "failed").sum()),
                "warm_started": self.warm_started, "cost": self.cost,
                "best_val_f1": self.best_metrics.get("val_class_f1"), "best_config": self.best_config,
                "importances": self.importances, "config": self.full_config}


@dataclass
class SearchOutcome:
    best_config: dict[str, Any]
    best_metrics: dict[str, Any]
    results: Any  # pandas.DataFrame, one row per trial (all studies)
    path: str
    report: Path | None = None  # report.html (local storage, when it could be written)
    studies: list[StudyOutcome] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # what search.json holds
    summary_file: Path | None = None  # <storage>/<space>/search.json (local storage): every study, both methods


def trial_frame(grid, space: SearchSpace, study: Study) -> pd.DataFrame:
    """One row per trial with ``status`` (completed / stopped / failed) and ``error``: a trial that errored, or
    trained to the end without a finite objective, is *failed*, never scored 0."""
    from sasi.platform.interrupts import error_line

    rows = []
    for r in grid:
        m, cfg = r.metrics or {}, r.config or {}
        completed = bool(m.get(COMPLETED))
        error = error_line(r.error) if r.error else ""
        if not error and completed and not finite(m.get(space.metric)):
            error = f"{space.metric} is {m.get(space.metric)!r} at the end of training"
        status = "failed" if error else "completed" if completed else "stopped"
        rows.append({"trial_id": m.get("trial_id") or Path(str(r.path or "")).name, "method": study.method,
                     "study": study.name, "shots": study.shots, "status": status, "error": error,
                     **{k: v for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
                     **{f"config/{k}": v for k, v in cfg.items()}})
    return pd.DataFrame(rows)


def _run_study(space: SearchSpace, study: Study, ctx: dict[str, Any]) -> StudyOutcome:
    """One Tuner over ``space`` at ``study.shots`` (resumed from its folder when asked)."""
    from sasi.platform import tracking
    from sasi.platform.progress import Progress, collect_worker_logs, quiet_tune
    from sasi.platform.runtime import reap_orphaned_placement_groups
    from sasi.platform.studies import asha

    storage, uri, res = ctx["storage"], ctx["uri"], ctx["resources"]
    base = to_dict(space.config({"data.shots": study.shots}))
    if not tracking.is_remote(base["data"]["dataset"]):
        base["data"]["dataset"] = str(Path(base["data"]["dataset"]).resolve())
    spec = TrialSpec(study.name, storage, uri, ctx["experiment"], ctx["parent"], base=base, workers=res.workers,
                     gpus_per_worker=res.worker.get("GPU", 0.0), cpus_per_worker=res.worker["CPU"],
                     extra_resources=res.extra, max_failures=0, split="val", inline=res.inline,
                     tags={"sasi.study": study.name, "sasi.method": study.method, "sasi.phase": "search"})
    trainable = tune.with_resources(tune.with_parameters(trial_driver, spec=spec), res.driver)
    prior = prior_trials(ctx["warm_start"], study)
    remaining = ctx["trials"] - len(prior)
    callbacks: list[tune.Callback] = [CloseRuns(uri, ctx["experiment"]), ReapOrphans(),
                                      Progress(study.tune_name, max(remaining, 0))]
    if ctx["optuna_db"] and not tracking.is_remote(storage):
        mirror = OptunaMirror(f"sqlite:///{storage}/{study.name}-optuna.db", study.name, space)
        mirror.carry(prior)
        callbacks.append(mirror)
    if ctx["resume"] and tune.Tuner.can_restore(study.path):
        reap_orphaned_placement_groups()
        tuner = tune.Tuner.restore(study.path, trainable, resume_errored=True, restart_errored=False,
                                   resume_unfinished=True)
    elif remaining > 0:
        scheduler = ctx["scheduler"]
        if scheduler == "asha":
            scheduler = asha(space.config({"data.shots": study.shots}))
        tried = [t.params for t in prior]
        start = [dict(p) for p in space.start if dict(p) not in tried]  # an earlier part already ran these
        searcher = SasiOptunaSearch(space.define_by_run, metric=space.metric, mode=space.mode,
                                    sampler=optuna.samplers.TPESampler(seed=ctx["seed"]),
                                    points_to_evaluate=start or None, prior=prior,
                                    constraints={c.metric: c.max for c in space.constraints},
                                    start_deadline=ctx["start_deadline"])
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, metric=space.metric,
                                        mode=space.mode, num_samples=remaining,
                                        max_concurrent_trials=res.max_concurrent, reuse_actors=res.reuse_actors),
            # a failed search trial is recorded as failed and the search goes on; retrying a diverged
            # configuration (NaN loss) would only fail again
            run_config=tune.RunConfig(name=study.tune_name, storage_path=study.storage_path, callbacks=callbacks,
                                      verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
    else:
        tuner = None  # the earlier parts already ran every trial asked for
    grid = []
    if tuner is not None:
        quiet_tune()
        try:
            with ctx["stop"].fit():
                grid = tuner.fit()
        finally:
            if not tracking.is_remote(study.path):
                collect_worker_logs(f"{study.path}/logs")
        ctx["stop"].check()
    frame = pd.concat([prior_frame(prior, space, study), trial_frame(grid, space, study)], ignore_index=True)
    frame["warm_start"] = frame["warm_start"].eq(True) if "warm_start" in frame else False
    best_params, best_metrics = _best(grid, prior, space)
    prefix = "" if study.single else f"N{study.shots}"
    importances = _log_summary(uri, ctx["parent"], grid, frame, space, prefix, prior) or {}
    tag = f".N{study.shots}" if not study.single else ""
    tracking.log_metrics(uri, ctx["parent"], {f"best_{k}{tag}": v for k, v in best_metrics.items()
                                              if k.startswith(("val_", "test_"))})
    cost = search_cost(frame, space.metric, space.mode, grid_points(space.parameters),
                       res.workers * res.worker.get("GPU", 0.0))
    if cost.get("search_vs_grid") is not None:
        tracking.log_metrics(uri, ctx["parent"], {f"search_vs_grid{tag}": cost["search_vs_grid"]})
    full = spec.trial_config(best_params) if best_params is not None else None
    return StudyOutcome(study, frame, best_params, best_metrics, to_dict(full) if full else None, importances,
                        len(prior), cost)


def run_search(space: SearchSpace, trials: int, gpus_per_trial: float, scheduler: str | Any | None,
               storage: str, tracking_uri: str | None = None, resume: bool = False, *,
               workers_per_trial: int = 1, seed: int = 0, optuna_db: bool = True, restart: bool = False,
               resume_command: str | None = None, shots: list[int] | None = None, confirm: int = 0,
               baseline: SearchSpace | str | Path | None = None,
               warm_start: str | Path | None = None, start_within: float | None = None) -> SearchOutcome:
    """Run (or ``resume``) a Tune search over ``space``; the caller has connected to Ray.

    ``shots`` (else ``space.shots``): one study per shot count; none: the single study at the base's
    ``data.shots``. ``baseline``: a search space searched the same way (same trials, shot counts, seed) or the
    folder of an earlier search (its ``search.json``). ``confirm`` K > 0: re-train each study's best
    configuration (and the baseline's) with K fresh seeds and score them on the test tomograms
    (:func:`sasi.platform.confirm.confirm`). Writes ``<storage>/<space>/search.json``.

    ``warm_start``: the storage of an earlier part of this search (same space, shot counts and baseline): each
    study's finished trials there (its Optuna mirror) count towards ``trials``, go into the sampler and the
    results, and only the rest are run, so a search can be split over sessions or machines (MLflow child runs
    stay with the part that ran them). ``start_within`` (seconds): no trial starts later than that after the
    search began; the running ones finish, and a study reached after it runs none (for a machine lent for a fixed
    time: with ``warm_start`` the next part goes on from there).

    SIGINT/SIGTERM stop it cleanly (MLflow runs KILLED, no summary, :class:`~sasi.platform.interrupts.Interrupted`
    names ``resume_command``); ``restart`` detaches the search's old MLflow parent run.

    ``scheduler``: ``"asha"`` (on the ``iteration`` metric, grace past ISS: :func:`sasi.platform.studies.asha`),
    ``None``, or any Tune ``TrialScheduler``.
    """
    from sasi.platform import confirm as confirmation
    from sasi.platform import interrupts, tracking
    from sasi.platform.report import publish_quietly
    from sasi.platform.runtime import trial_resources
    from sasi.platform.studies import studies_of

    storage = storage if tracking.is_remote(storage) else str(Path(storage).resolve())
    uri = tracking.resolve_tracking_uri(tracking_uri, storage)
    experiment = tracking.ensure_experiment(uri)
    if restart:
        tracking.retire_parent(uri, experiment, space.name, f"{space.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    parent = tracking.parent_run(uri, experiment, space.name, {"kind": "search", "space": space.source})
    shots = list(shots or space.shots)
    baseline_space = baseline if isinstance(baseline, SearchSpace) else None
    tracking.log_params(uri, parent, {"trials": trials, "gpus_per_trial": gpus_per_trial, "seed": seed,
                                      "scheduler": scheduler if isinstance(scheduler, str) else
                                      type(scheduler).__name__ if scheduler else "none",
                                      "preset": space.preset, "shots": shots or "base", "confirm": confirm,
                                      "baseline": getattr(baseline, "name", baseline) or "none"})
    resume_command = resume_command or interrupts.command_line(add=("--resume",))
    with interrupts.guarded(uri, experiment, parent, resume_command) as stop:
        res = trial_resources(workers_per_trial, gpus_per_trial / max(1, workers_per_trial), trials=trials,
                              inline=not tracking.is_remote(storage))
        ctx = {"storage": storage, "uri": uri, "experiment": experiment, "parent": parent, "resources": res,
               "resume": resume, "scheduler": scheduler, "seed": seed, "trials": trials, "optuna_db": optuna_db,
               "stop": stop, "warm_start": warm_start,
               "start_deadline": None if start_within is None else time.monotonic() + start_within}
        outcomes = [_run_study(sp, study, ctx) for sp in [space] + ([baseline_space] if baseline_space else [])
                    for study in studies_of(sp, storage, shots)]
        if all(o.best_config is None for o in outcomes):
            raise SasiError(f"no trial of {space.name} trained to the end with a score "
                            f"(first error: {_first_error(outcomes) or 'none recorded'})")
        summary = {"name": space.name, "metric": space.metric, "seed": seed, "trials_per_study": trials,
                   "studies": [o.entry() for o in outcomes]}
        if baseline is not None and baseline_space is None:
            summary["studies"] += confirmation.baseline_studies(baseline, shots or [o.study.shots for o in outcomes])
        if confirm > 0:
            confirmation.confirm(summary, confirm, ctx, baseline=getattr(baseline, "name", None)
                                 or confirmation.baseline_name(baseline))
        frame = pd.concat([o.frame for o in outcomes], ignore_index=True)
        summary_file = confirmation.write_summary(summary, f"{storage.rstrip('/')}/{space.name}", uri, parent)
        if baseline_space is not None:
            own = {**summary, "name": baseline_space.name,
                   "studies": [s for s in summary["studies"] if s["method"] == baseline_space.name]}
            confirmation.write_summary(own, f"{storage.rstrip('/')}/{baseline_space.name}", None, None)
        failed = int((frame["status"] == "failed").sum()) if "status" in frame else 0
        tracking.log_metrics(uri, parent, {"trials_failed": failed, "trials_total": len(frame)})
        tracking.finish(uri, parent)
    report = publish_quietly(parent, uri, storage, space.name)
    first = outcomes[0]
    return SearchOutcome(first.best_config or {}, first.best_metrics, frame, outcomes[0].study.path, report,
                         outcomes, summary, summary_file)


def _first_error(outcomes: list[StudyOutcome]) -> str:
    for o in outcomes:
        errors = [e for e in o.frame.get("error", pd.Series(dtype=str)) if e]
        if errors:
            return errors[0]
    return ""


def _best(grid, prior: list[optuna.trial.FrozenTrial], space: SearchSpace) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """Sampled parameters and numeric metrics of the best trial that trained to the end with a finite score,
    among this part's (Tune ``Result``s) and an earlier part's (``prior``; only their objective is known);
    stopped trials' early scores and failed trials don't count. ``(None, {})`` when there is none."""
    metric = space.metric
    done = [(dict(r.config or {}), {k: v for k, v in r.metrics.items() if finite(v)})
            for r in grid if not r.error and (r.metrics or {}).get(COMPLETED) and finite((r.metrics or {}).get(metric))]
    done += [(dict(t.params), {metric: float(t.value)}) for t in prior
             if t.state == optuna.trial.TrialState.COMPLETE and finite(t.value)]
    if not done:
        return None, {}
    sign = 1 if space.mode == "max" else -1
    return max(done, key=lambda d: sign * d[1][metric])
