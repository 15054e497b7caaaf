"""The Tune trial driver: config → MLflow child run → training → test scoring → artifacts.

A trial is a Tune function (``trial_driver``) that launches a Ray Train run named from stable IDs
(``f"{suite}-{trial_id}"``), so a restarted trial resumes from that run's checkpoints; a one-worker trial on
local (or mounted) storage trains in its own actor instead (``inline``: no worker group to start), checkpoints
under the same name. Callbacks here
run in the suite driver: :class:`CloseRuns` leaves no MLflow run RUNNING when Tune stops or fails a trial.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from sasi.config import apply_overrides, from_dict, save_config, to_dict
from sasi.train.config import SasiConfig

COMPLETED = "trial_completed"  # reported (1.0) only by a trial that trained to the end and was tested
GRID_KEYS = ("variant", "shots", "seed")


@dataclass
class TrialSpec:
    """Everything a trial driver needs besides its sampled parameters (pickled into each trial)."""

    suite: str
    storage: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    base: dict[str, Any] = field(default_factory=dict)  # nested SasiConfig dict (search)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # nested dicts per variant (ablation)
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    extra_resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per Train worker
    max_failures: int = 2
    inline: bool = False  # one worker trained in the trial's own actor (see sasi.platform.runtime.trial_resources)
    split: str = "test"  # which tomograms the trained model is scored on ("val" for search trials)
    tags: dict[str, str] = field(default_factory=dict)  # extra MLflow tags of every child run

    def trial_config(self, params: dict[str, Any]) -> SasiConfig:
        """Variant (or base) + grid values (shots, seed) + sampled dotted parameters, validated."""
        variant = params.get("variant")
        source = f"trial of {self.suite}"
        config = from_dict(SasiConfig, self.variants[variant] if variant is not None else self.base, source)
        overrides = {k: v for k, v in params.items() if k not in GRID_KEYS}
        if "shots" in params:
            overrides["data.shots"] = params["shots"]
        if "seed" in params:
            overrides["data.fewshot_seed"] = overrides["train.seed"] = params["seed"]
        return apply_overrides(config, {**overrides, "name": variant or self.suite}, source)


def _log_setup(spec: TrialSpec, run_id: str, config: SasiConfig, params: dict[str, Any], tmp: Path) -> None:
    from sasi.platform import tracking

    uri = spec.tracking_uri
    tracking.log_params(uri, run_id, {**tracking.flatten(to_dict(config)),
                                      **{f"sampled.{k}": v for k, v in params.items()}})
    tracking.set_tags(uri, run_id, {"seed": config.train.seed, "fewshot_seed": config.data.fewshot_seed,
                                    "shots": config.data.shots})
    tracking.log_artifacts(uri, run_id, [save_config(config, tmp / "config.yaml")])


REUSE_WAIT_S = "60"  # how long Tune waits for a stopped trial's thread to end before reusing its actor (default 2)


def trial_driver(params: dict[str, Any], spec: TrialSpec) -> None:
    """One Tune trial (runs as a Tune function actor, possibly one that ran an earlier trial)."""
    import gc
    import os
    import socket

    from ray.tune.integration.ray_train import TuneReportCallback

    # Tune reuses this actor only once the previous trial's thread has ended; past its wait the *next* trial
    # fails, so give a stopped trial time to unwind (MLflow calls, temporary files)
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", REUSE_WAIT_S)
    gc.collect()  # an earlier trial's model, optimiser and graphs, if a reference cycle held them

    from sasi.platform import tracking
    from sasi.platform.evaluation import evaluate_checkpoint
    from sasi.platform.train import local_checkpoint, run_training

    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    config = spec.trial_config(params)
    uri = spec.tracking_uri
    tags = {k: params[k] for k in GRID_KEYS if k in params}
    name = (f"{spec.suite}/{params['variant']}/N={params['shots']}/seed={params['seed']}"
            if all(k in params for k in GRID_KEYS) else ctx.get_trial_name())
    run_id = tracking.child_run(uri, spec.experiment_id, spec.parent_run_id, trial_id, name,
                                {**tags, "variant": params.get("variant", config.name),
                                 "sasi.gpus": spec.workers * spec.gpus_per_worker,
                                 "sasi.process": f"{socket.gethostname()}:{os.getpid()}", **spec.tags})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _log_setup(spec, run_id, config, params, Path(tmp))
            outcome = run_training(config, spec.workers, spec.gpus_per_worker, spec.storage, f"{spec.suite}-{trial_id}",
                                   uri, run_id, cpus_per_worker=spec.cpus_per_worker,
                                   max_failures=spec.max_failures, callbacks=[TuneReportCallback()],
                                   extra_resources=spec.extra_resources, inline=spec.inline, on_report=tune.report)
            if outcome.checkpoint is None:
                raise RuntimeError("training finished without a checkpoint")
            report = evaluate_checkpoint(local_checkpoint(outcome.checkpoint, Path(tmp) / "ckpt"),
                                         Path(tmp) / "out", spec.split)
            tracking.log_metrics(uri, run_id, report.metrics, step=config.train.iterations)
            tracking.log_artifacts(uri, run_id, report.files)
            tracking.set_tags(uri, run_id, {"checkpoint": outcome.checkpoint})
        final = {k: v for k, v in outcome.metrics.items() if isinstance(v, (int, float))}
        tune.report({**final, **report.metrics, "iteration": float(config.train.iterations), COMPLETED: 1.0})
    except BaseException as exc:
        if tracking.run_status(uri, run_id) == "RUNNING":  # CloseRuns may have marked a stopped trial KILLED
            from sasi.platform.interrupts import error_line

            tracking.best_effort("tagging the error", tracking.set_tags, uri, run_id, {"sasi.error": error_line(exc)})
            tracking.finish(uri, run_id, "FAILED")
        raise
    tracking.finish(uri, run_id, "FINISHED")


class CloseRuns(tune.Callback):
    """In the suite driver: a trial Tune stopped (scheduler) or gave up on closes its MLflow run."""

    def __init__(self, tracking_uri: str, experiment_id: str):
        self.uri, self.experiment_id = tracking_uri, experiment_id

    def _close(self, trial, status: str, replace: tuple[str, ...] = ("RUNNING",)) -> None:
        from sasi.platform import tracking

        run_id = tracking.trial_run_id(self.uri, self.experiment_id, trial.trial_id)
        if run_id and tracking.run_status(self.uri, run_id) in replace:
            if status == "KILLED":
                tracking.set_tags(self.uri, run_id, {"sasi.stopped_early": "true"})
            tracking.finish(self.uri, run_id, status)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        # Completed without the final report: the scheduler stopped it. Its driver may already have marked the
        # run FAILED (the stop interrupts training with an error) if it got there before Ray ended the actor.
        if (trial.last_result or {}).get(COMPLETED) != 1.0:
            self._close(trial, "KILLED", replace=("RUNNING", "FAILED"))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._close(trial, "FAILED")


class ReapOrphans(tune.Callback):
    """In the suite driver: every ``every_s`` seconds, free placement groups of dead Train runs and drivers."""

    def __init__(self, every_s: float = 30.0):
        self.every_s, self._last = every_s, 0.0

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        import time

        from sasi.platform.runtime import reap_orphaned_placement_groups
        from sasi.platform.tracking import best_effort

        if time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            best_effort("reaping orphaned placement groups", reap_orphaned_placement_groups, timeout_s=5)
