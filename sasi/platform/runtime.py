"""Connecting to Ray and sizing trials from the cluster's resources."""

from __future__ import annotations

import os
from dataclasses import dataclass

DRIVER_SLOT = "train_driver"  # custom resource the cluster head offers for Tune trial drivers
DRIVER_CPU = 0.05  # CPU share of a trial driver when the cluster has no ``train_driver`` resource


def init_ray(num_cpus: int | None = None) -> None:
    """Join the job's cluster inside ``ray job submit`` (``RAY_ADDRESS`` set), else start a local one."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(address="local", include_dashboard=True, num_cpus=num_cpus, log_to_driver=True)


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks for: its driver actor and each of its Train workers."""

    driver: dict[str, float]
    worker: dict[str, float]
    workers: int
    max_concurrent: int

    @property
    def use_gpu(self) -> bool:
        return self.worker.get("GPU", 0) > 0


def trial_resources(workers: int, gpus_per_worker: float) -> TrialResources:
    """Driver on ``train_driver`` if the cluster has it (else a small CPU share), workers on GPU or CPU.

    Concurrency: driver slots on clusters with ``train_driver`` (the autoscaler adds GPUs on demand),
    else how many trials the current GPUs (or CPUs in CPU mode) hold at once.
    """
    import ray

    total = ray.cluster_resources()
    workers = max(1, workers)
    if total.get(DRIVER_SLOT, 0) >= 1:
        driver = {"CPU": 0.0, DRIVER_SLOT: 1.0}
        slots = int(total[DRIVER_SLOT])
    else:
        driver = {"CPU": DRIVER_CPU}
        slots = None
    if gpus_per_worker > 0:
        worker = {"CPU": 1.0, "GPU": float(gpus_per_worker)}
        fit = int(total.get("GPU", 0) // (gpus_per_worker * workers))
    else:
        worker = {"CPU": round(1.0 - DRIVER_CPU / workers, 4)}
        fit = int(total.get("CPU", 1) // 1.0) // workers
    concurrent = slots if slots is not None else fit
    return TrialResources(driver, worker, workers, max(1, concurrent))
