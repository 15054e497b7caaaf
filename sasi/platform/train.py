"""Distributed SaSi training with Ray Train V2 (``TorchTrainer``), or in this process (no Ray, or a one-worker
Tune trial that trains in its own actor).

The training loop itself is :func:`sasi.train.loop.fit`; this module only adapts its :class:`Hooks` to Ray:
rank and world size from the Train context, DDP through ``prepare_model``, resume from the latest
checkpoint, and ``ray.train.report`` for metrics and checkpoints (every rank reports the same number of
times; only rank 0 attaches a checkpoint). Each rank draws different crops because the loop seeds its
generator with the rank.

Fault-injection hook (tests): when the loop config holds ``fail_once`` (a file path; ``run_training``
takes it from ``$SASI_FAIL_ONCE``), rank 0 raises once at the first report after a checkpoint and creates
that file, so the retried worker group (``FailureConfig``) must resume from that checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sasi.config import from_dict, to_dict
from sasi.train.config import SasiConfig
from sasi.train.loop import Hooks, fit

FAIL_ONCE_ENV = "SASI_FAIL_ONCE"


class InjectedFailure(RuntimeError):
    """Raised once by the fault-injection hook."""


def _metric_logger(loop_config: dict[str, Any], rank: int) -> Callable[[dict[str, float]], None]:
    """Rank 0 logs every report to the trial's MLflow run (if one is configured)."""
    uri, run_id = loop_config.get("tracking_uri"), loop_config.get("run_id")
    if rank != 0 or not uri or not run_id:
        return lambda metrics: None
    from sasi.platform.tracking import log_metrics

    return lambda metrics: log_metrics(uri, run_id, metrics, step=int(metrics.get("iteration", 0)))


def _fail_once(marker: str | None, rank: int) -> None:
    if marker and rank == 0 and not Path(marker).exists():
        Path(marker).touch()
        raise InjectedFailure(f"injected failure after the first checkpoint (marker {marker})")


def _reporter(loop_config: dict[str, Any], rank: int,
              send: Callable[[dict[str, float], Path | None], None]) -> Callable[[dict[str, float], Path | None], None]:
    """The loop's report hook: carry the last validation scores forward (checkpoint-only reports keep the
    objective), inject the test failure, ``send`` (Ray Train, or a copy to storage), log to MLflow from rank 0."""
    log = _metric_logger(loop_config, rank)
    latest: dict[str, float] = {}
    checkpointed = [False]

    def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        if checkpointed[0]:
            _fail_once(loop_config.get("fail_once"), rank)
        latest.update({k: v for k, v in metrics.items() if k.startswith("val_")})
        metrics = {**latest, **metrics}
        send(metrics, checkpoint_dir)
        log(metrics)
        checkpointed[0] = checkpointed[0] or checkpoint_dir is not None

    return report


def train_worker(loop_config: dict[str, Any]) -> None:
    """Body of every Ray Train worker: ``fit`` with Ray-backed hooks."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    config = from_dict(SasiConfig, loop_config["config"], "train_loop_config")

    def send(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    def prepare(model):
        kwargs = {"find_unused_parameters": True} if world > 1 else None
        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs=kwargs)

    with ExitStack() as stack:
        resume = ray.train.get_checkpoint()
        resume_dir = Path(stack.enter_context(resume.as_directory())) if resume else None
        hooks = Hooks(rank=rank, world_size=world, prepare_model=prepare, report=_reporter(loop_config, rank, send),
                      resume_from=resume_dir, device=ray.train.torch.get_device())
        fit(config, hooks, progress=False)


@dataclass
class TrainingOutcome:
    checkpoint: Path | str | None  # the final checkpoint folder (local path or URI)
    metrics: dict[str, float]


def _in_process(loop_config: dict[str, Any], storage: str, name: str, progress: bool = True,
                on_report: Callable[[dict[str, float]], None] | None = None, keep: int = 2) -> TrainingOutcome:
    """Plain ``fit`` in this process; checkpoints go to ``storage/name/checkpoint_<iteration>`` (the last
    ``keep``), and a re-run resumes from the latest one there. ``on_report`` also gets every report."""
    config = from_dict(SasiConfig, loop_config["config"], "config")
    folder = Path(storage) / name
    existing = sorted(folder.glob("checkpoint_*"))
    # A re-run after the final checkpoint trains nothing: the outcome is that checkpoint and its last scores.
    state: dict[str, Any] = {"checkpoint": existing[-1] if existing else None, "metrics": {}}

    def send(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        state["metrics"] = metrics
        if checkpoint_dir is not None:
            target = folder / f"checkpoint_{int(metrics.get('iteration', 0)):06d}"
            partial = folder / f".{target.name}.partial"  # a kill mid-copy never leaves a half checkpoint to resume
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(checkpoint_dir, partial)
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
            state["checkpoint"] = target
            for old in sorted(folder.glob("checkpoint_*"))[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        if on_report is not None:
            on_report(metrics)

    result = fit(config, Hooks(report=_reporter(loop_config, 0, send), resume_from=existing[-1] if existing else None),
                 progress=progress)
    return TrainingOutcome(state["checkpoint"], state["metrics"] or (result.history or [{}])[-1])


def run_training(config: SasiConfig, workers: int, gpus_per_worker: float, storage: str | os.PathLike,
                 name: str, tracking_uri: str | None = None, run_id: str | None = None, *,
                 cpus_per_worker: float = 1.0, max_failures: int = 2, callbacks: Sequence[Any] = (),
                 fail_once: str | None = None, extra_resources: dict[str, float] | None = None,
                 inline: bool = False, on_report: Callable[[dict[str, float]], None] | None = None) -> TrainingOutcome:
    """Train ``config`` on ``workers`` Ray Train workers (0: in this process, without Ray).

    ``inline`` with one worker and local storage: train in this process too (a Tune trial actor that holds the
    worker's resources itself), with no Train worker group to start; ``on_report`` gets every report.
    Re-running with the same ``storage``/``name`` resumes from the latest checkpoint there.
    ``extra_resources``: custom Ray resources each worker also needs (e.g. an accelerator type that only
    some node types offer, so the autoscaler adds those nodes).
    """
    loop_config = {"config": to_dict(config), "tracking_uri": tracking_uri, "run_id": run_id,
                   "fail_once": fail_once or os.environ.get(FAIL_ONCE_ENV)}
    storage = str(storage) if "://" in str(storage) else str(Path(storage).resolve())
    if workers == 0 or (inline and workers == 1 and "://" not in storage):
        return _in_process(loop_config, storage, name, progress=workers == 0, on_report=on_report)
    import ray.train
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker > 0 else {}),
                 **(extra_resources or {})}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage, callbacks=list(callbacks),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
    )
    result = trainer.fit()
    checkpoint = result.checkpoint.path if result.checkpoint else None
    return TrainingOutcome(checkpoint, dict(result.metrics or {}))


def local_checkpoint(checkpoint: Path | str, into: str | os.PathLike | None = None) -> Path:
    """A local folder holding the checkpoint (downloads remote storage into ``into`` or a temp dir)."""
    if "://" not in str(checkpoint):
        return Path(checkpoint)
    import ray.train

    target = Path(into or tempfile.mkdtemp(prefix="sasi-ckpt-"))
    return Path(ray.train.Checkpoint(str(checkpoint)).to_directory(str(target)))
