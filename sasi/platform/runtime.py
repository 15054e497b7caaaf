"""Connecting to Ray and sizing trials from the cluster's resources."""

from __future__ import annotations

import os
from dataclasses import dataclass

DRIVER_SLOT = "train_driver"  # custom resource the cluster head offers for Tune trial drivers
DRIVER_CPU = 0.05  # CPU share of a trial driver when the cluster has no ``train_driver`` resource


def init_ray(num_cpus: int | None = None, log_to_driver: bool = False) -> None:
    """Join the job's cluster inside ``ray job submit`` (``RAY_ADDRESS`` set), else start a local one.

    Worker output (Ray Train's "Reporting training result ...", trial stdout) stays in the session's log files
    unless ``log_to_driver`` (``sasi train``: one run's progress); suites and searches copy it under their storage
    folder (:func:`sasi.platform.progress.collect_worker_logs`) and show one progress view.
    """
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=log_to_driver)
    else:
        ray.init(address="local", include_dashboard=True, num_cpus=num_cpus, log_to_driver=log_to_driver)


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks for: its driver actor and each of its Train workers (``inline``: one worker, trained
    in the driver actor itself, which then holds the worker's resources)."""

    driver: dict[str, float]
    worker: dict[str, float]
    workers: int
    max_concurrent: int
    inline: bool = False

    @property
    def use_gpu(self) -> bool:
        return self.worker.get("GPU", 0) > 0

    @property
    def reuse_actors(self) -> bool:
        """Whether Tune should start the next trial in a finished trial's actor (Tune's default: a fresh process
        per trial): inline trials, whose actor holds imports and the CUDA context and nothing of the trial once
        its function has returned (a multi-worker trial's actor only drives a Train worker group).
        ``SASI_REUSE_ACTORS=0`` in the driver's environment turns it off."""
        return self.inline and os.environ.get("SASI_REUSE_ACTORS", "1") != "0"

    @property
    def extra(self) -> dict[str, float]:
        """Each worker's custom resources (besides CPU and GPU)."""
        return {k: v for k, v in self.worker.items() if k not in ("CPU", "GPU")}


def trial_resources(workers: int, gpus_per_worker: float, per_worker: dict[str, float] | None = None, *,
                    max_concurrent: int | None = None, trials: int | None = None,
                    inline: bool = False) -> TrialResources:
    """Driver on ``train_driver`` if the cluster has it (else a small CPU share), workers on GPU or CPU.

    ``inline`` (asked for, and one worker): no Train worker group; the trial trains in its own actor, which asks
    for the worker's resources (no driver share, no driver slot), saving the worker group's start-up.

    ``per_worker`` overrides or extends each Train worker's resources (e.g. ``{"CPU": 4, "accel_a10g": 1}``);
    ``max_concurrent`` fixes the number of trials at once. Otherwise concurrency is the driver slots on
    clusters with ``train_driver`` (the autoscaler adds GPUs on demand), else how many trials the cluster's
    current nodes hold at once; when they hold none (an autoscaling cluster with no workers yet) it is
    ``trials`` (all of them; the autoscaler sizes the cluster), or 1 when that is unknown.
    """
    import ray

    total = ray.cluster_resources()
    workers = max(1, workers)
    inline = inline and workers == 1
    if total.get(DRIVER_SLOT, 0) >= 1:
        driver = {"CPU": 0.0, DRIVER_SLOT: 1.0}
        slots = int(total[DRIVER_SLOT])
    else:
        driver = {"CPU": DRIVER_CPU}
        slots = None
    if gpus_per_worker > 0:
        worker = {"CPU": 1.0, "GPU": float(gpus_per_worker)}
    else:
        worker = {"CPU": 1.0 if inline else round(1.0 - DRIVER_CPU / workers, 4)}
    worker.update({k: float(v) for k, v in (per_worker or {}).items()})
    worker = {k: v for k, v in worker.items() if v > 0 or k == "CPU"}
    if inline:
        driver = dict(worker)
    need = {k: round(v * workers + (driver["CPU"] if k == "CPU" and not inline else 0.0), 4)
            for k, v in worker.items() if v > 0}
    fit = min((int(total.get(k, 0) // v) for k, v in need.items()), default=0)  # whole trials, all workers
    if max_concurrent is not None:
        concurrent = max_concurrent
    elif slots is not None:
        concurrent = slots
    else:
        concurrent = fit if fit > 0 else (trials or 1)
    return TrialResources(driver, worker, workers, max(1, concurrent), inline)


def reap_orphaned_placement_groups(idle_s: float = 60.0, timeout_s: int = 10) -> int:
    """Remove placement groups nobody will use again; return how many.

    Orphans are groups created by a driver that is gone (a killed ``sasi tune``), and groups older than
    ``idle_s`` that hold no live actor: the worker group of a Train run whose controller died (an
    early-stopped trial). Train's own cleaner removes those too, but it polls the state API, which can
    stall for minutes on a busy head, and the held CPUs/GPUs then starve the next trials (ray#54305).
    Detached groups are never touched. Each state-API query gives up after ``timeout_s``.
    """
    import time

    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group
    from ray.util.state import list_actors, list_jobs, list_placement_groups

    context = ray.get_runtime_context()
    address = context.gcs_address
    query = {"address": address, "timeout": timeout_s}
    live_jobs = {j.job_id for j in list_jobs(**query) if str(j.status).endswith("RUNNING")}
    live_jobs.add(context.get_job_id())
    in_use = {a.placement_group_id for a in list_actors(**query, detail=True, limit=10_000)
              if a.state != "DEAD" and a.placement_group_id}
    now_ns, reaped = time.time_ns(), 0
    for group in list_placement_groups(**query, detail=True, limit=10_000):
        if group.state not in ("CREATED", "PENDING", "RESCHEDULING") or group.is_detached:
            continue
        created_ns = int((group.stats or {}).get("creation_request_received_ns") or now_ns)
        idle = group.placement_group_id not in in_use and now_ns - created_ns > idle_s * 1e9
        if group.creator_job_id not in live_jobs or idle:
            remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group.placement_group_id))))
            reaped += 1
    return reaped
