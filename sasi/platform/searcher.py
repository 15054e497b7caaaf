"""The Optuna side of a search: the Tune searcher (pruned / failed trials, constraints, an earlier part's trials),
the Optuna studies a search leaves (an SQLite mirror for browsing and for ``--warm-start``) and what is read back
from them (trials of an earlier part, parameter importances and figures)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from sasi.errors import SasiError
from sasi.platform.search_space import SearchSpace
from sasi.platform.studies import Study
from sasi.platform.trial import COMPLETED

log = logging.getLogger(__name__)


class SasiOptunaSearch(OptunaSearch):
    """Tells Optuna PRUNED for trials a scheduler stopped early and forwards metric constraints; ``prior``
    (finished trials of an earlier part of the same search) go into the study before the first ask;
    ``start_deadline`` (a ``time.monotonic()`` value): no trial starts after it, and the search ends when the
    running ones have finished (nothing half-trained is lost when a machine is lent for a fixed time)."""

    def __init__(self, *args, constraints: dict[str, float] | None = None,
                 prior: list[optuna.trial.FrozenTrial] | None = None, start_deadline: float | None = None, **kwargs):
        self.prior = list(prior or [])
        super().__init__(*args, **kwargs)
        self.constraints = constraints or {}
        self.start_deadline = start_deadline

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.start_deadline is not None and time.monotonic() > self.start_deadline:
            return Searcher.FINISHED
        return super().suggest(trial_id)

    def _setup_study(self, mode):  # private in ray 2.60 (pinned); Ray's warm start does not take define-by-run spaces
        super()._setup_study(mode)
        self._ot_study.add_trials(self.prior)

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
        if not finite(result.get(self._metric)):  # trained to the end without a score: failed, never F1 0
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _direction(space: SearchSpace) -> str:
    return "maximize" if space.mode == "max" else "minimize"


def _frozen_trial(space: SearchSpace, config: dict, result: dict, trial_id: str | None,
                  failed: bool = False) -> optuna.trial.FrozenTrial:
    """A finished Tune trial for Optuna: COMPLETE if it trained to the end with a finite score, FAIL if it
    errored or ended without one, else (stopped early) PRUNED."""
    params = {p.path: config[p.path] for p in space.parameters if p.path in config}
    dists = {p.path: p.distribution() for p in space.parameters if p.path in params}
    value = result.get(space.metric)
    completed = bool(result.get(COMPLETED))
    done = completed and finite(value) and not failed
    state = (optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.FAIL if failed or completed
             else optuna.trial.TrialState.PRUNED)
    attrs = {"ray_trial_id": trial_id, **({"time_total_s": float(result["time_total_s"])}
                                         if finite(result.get("time_total_s")) else {})}
    return optuna.trial.create_trial(params=params, distributions=dists, value=value if done else None,
                                     state=state, user_attrs=attrs)


def study_of(results, space: SearchSpace, prior: list[optuna.trial.FrozenTrial] | None = None) -> optuna.Study:
    """An in-memory Optuna study of a search's finished trials (Tune ``Result``s; errored ones left out), after
    the ``prior`` ones of an earlier part of the search."""
    study = optuna.create_study(direction=_direction(space))
    study.add_trials([*(prior or []), *(_frozen_trial(space, r.config or {}, r.metrics or {},
                                                      (r.metrics or {}).get("trial_id")) for r in results if not r.error)])
    return study


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
STATUS = {optuna.trial.TrialState.COMPLETE: "completed", optuna.trial.TrialState.PRUNED: "stopped",
          optuna.trial.TrialState.FAIL: "failed"}


def prior_trials(folder: str | Path | None, study: Study) -> list[optuna.trial.FrozenTrial]:
    """The finished trials of ``study`` in an earlier search's storage (its Optuna mirror
    ``<folder>/<study>-optuna.db``): a search split into parts (sessions, machines) continues from them."""
    if folder is None:
        return []
    db = Path(folder) / f"{study.name}-optuna.db"
    if not db.is_file():
        raise SasiError(f"--warm-start: no Optuna study {study.name!r} there (expected {db.name})", folder)
    stored = optuna.load_study(study_name=study.name, storage=f"sqlite:///{db.resolve()}")
    return stored.get_trials(deepcopy=True, states=FINISHED)


def check_warm_start(folder: str | Path, spaces: list[SearchSpace], shots: list[int]) -> None:
    """Before anything starts: every study of ``spaces`` at ``shots`` has its Optuna mirror in ``folder``."""
    from sasi.platform.studies import studies_of

    for space in spaces:
        for study in studies_of(space, str(folder), shots):
            if not (Path(folder) / f"{study.name}-optuna.db").is_file():
                raise SasiError(f"--warm-start: no Optuna study {study.name!r} there (expected {study.name}-optuna.db)",
                                folder)


def prior_frame(prior: list[optuna.trial.FrozenTrial], space: SearchSpace, study: Study) -> pd.DataFrame:
    """:func:`trial_frame`'s rows for ``prior`` trials (their sampled parameters and objective; ``warm_start``)."""
    return pd.DataFrame([{"trial_id": t.user_attrs.get("ray_trial_id", f"prior-{t.number}"), "method": study.method,
                          "study": study.name, "shots": study.shots, "status": STATUS[t.state], "error": "",
                          "warm_start": True, **({space.metric: t.value} if t.value is not None else {}),
                          **({"time_total_s": t.user_attrs["time_total_s"]} if "time_total_s" in t.user_attrs else {}),
                          **({COMPLETED: 1.0} if t.state == optuna.trial.TrialState.COMPLETE else {}),
                          **{f"config/{k}": v for k, v in t.params.items()}} for t in prior])


class OptunaMirror(tune.Callback):
    """Copies each finished trial into an Optuna RDB study (idempotent on the Ray trial id)."""

    def __init__(self, url: str, study: str, space: SearchSpace):
        self.url, self.study_name, self.space = url, study, space

    def _study(self) -> optuna.Study:
        return optuna.create_study(storage=self.url, study_name=self.study_name, direction=_direction(self.space),
                                   load_if_exists=True)

    def on_trial_complete(self, iteration: int, trials: list, trial, failed: bool = False, **info) -> None:
        study = self._study()
        if any(t.user_attrs.get("ray_trial_id") == trial.trial_id for t in study.get_trials(deepcopy=False)):
            return
        study.add_trial(_frozen_trial(self.space, trial.config, trial.last_result or {}, trial.trial_id, failed))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self.on_trial_complete(iteration, trials, trial, failed=True)

    def carry(self, prior: list[optuna.trial.FrozenTrial]) -> None:
        """Copy an earlier part's trials in (once), so the next part can warm-start from this one alone."""
        if not prior:
            return
        study = self._study()
        have = {t.user_attrs.get("ray_trial_id") for t in study.get_trials(deepcopy=False)}
        study.add_trials([t for t in prior if t.user_attrs.get("ray_trial_id") not in have])


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
