"""``sasi tune --gpus-per-trial auto``: how many trials share one GPU, from memory rather than a fixed fraction.

A trial's GPU memory is its training (weights, Adam, activations of a batch of crops; measured 0.66 GiB peak at
batch 16, 24³ crops, preset sasi: ``benchmarks/results/trial_packing-*.json``), the CUDA context and cuDNN
workspace of its process (~0.9 GiB: 1.58 GiB seen by nvidia-smi for that trial), and the **transient peak of
validation**: detection runs the network over the validation tomogram in tiles of edge ≤ ``detect.tile``
(:func:`sasi.detect.memory.detection_gb`: 9.1 GB peak at tile 256 on a 512³ volume).
Trials validate at unrelated moments, but nothing stops them from doing so at once, so every trial is counted
with its detection peak. The free memory of the GPU is measured (``nvidia-smi``) when there is one.

Packing more trials than the GPU has throughput for only slows each down. Training steps alone saturate an H100
at four trials (aggregate 111 vs 106 it/s at two), but whole search trials also start up, validate and build
batches on the host, and those phases interleave: on one H200 (sasi-core, 4,000 iterations, inline trials, CUDA
graphs) six packed trials took 4.9 min (0.82 min each, GPU busy 70 % on average) and eight 6.2 min (0.78 min
each, 84 %; 80 GB peak, 10 GB a trial, as estimated below). So at most :data:`THROUGHPUT_CAP` trials share a
GPU; each trial also needs a CPU core. On a machine without GPUs ``auto`` means CPU trials (0).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass

from sasi.detect.memory import detection_gb

log = logging.getLogger(__name__)

TRAIN_GB_AT_16 = 0.66  # peak allocated, batch 16, 24³ crops, SaSi step (consistency: two passes)
CONTEXT_GB = 0.9  # CUDA context + cuDNN workspace + allocator slack per trial process
RESERVE = 0.1  # of the free memory, left unused (fragmentation, other processes)
THROUGHPUT_CAP = 8  # trials per GPU: whole trials still gained from 6 to 8 on an H200 (module docstring)


@dataclass(frozen=True)
class Packing:
    gpus_per_trial: float
    trials_per_gpu: int
    per_trial_gb: float
    free_gb: float | None
    why: str


def trial_gb(config, shape_zyx: tuple[int, int, int] | None = None) -> float:
    """GPU memory one trial of ``config`` (a SasiConfig) may hold at its peak."""
    patch, batch = config.data.patch, config.train.batch_size
    passes = 1.0 if config.consistency.enabled or config.infill.enabled else 0.6
    train = TRAIN_GB_AT_16 * passes * (batch / 16) * (patch / 24) ** 3
    if config.pretrain.schedule != "none":
        train = max(train, TRAIN_GB_AT_16 * (config.pretrain.batch_size / 16) * (patch / 24) ** 3 * 2)
    return CONTEXT_GB + train + detection_gb(config.detect.tile, shape_zyx)


def free_gpu_memory_gb() -> list[float]:
    """Free memory of each visible GPU in GB (``nvidia-smi``); [] without one."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [float(line) * 1.048576e-3 for line in out.split() if line.strip()]  # MiB → GB


def _val_shape(config) -> tuple[int, int, int] | None:
    """Shape of the validation tomogram (from its MRC header), or None when it cannot be read."""
    try:
        from pathlib import Path

        from sasi.dataset import load_dataset
        from sasi.platform.preflight import _mrc_shape

        ds = load_dataset(config.data.dataset)
        name = config.data.val_tomogram or (ds.splits.get("val") or ds.splits.get("train"))[0]
        return _mrc_shape(Path(config.data.dataset) / name / "tomogram.mrc")
    except Exception:  # noqa: BLE001 - the estimate then assumes full tiles
        return None


def auto_packing(config, cpus: float | None = None, gpus: list[float] | None = None) -> Packing:
    """Trials per GPU for ``config``: free memory (minus :data:`RESERVE`) over :func:`trial_gb`, at most
    :data:`THROUGHPUT_CAP` and at most the CPU cores per GPU; 0 GPUs per trial on a machine without GPUs."""
    free = free_gpu_memory_gb() if gpus is None else gpus
    need = trial_gb(config, _val_shape(config))
    if not free:
        return Packing(0.0, 0, need, None, "no GPU: CPU trials")
    least = min(free)
    by_memory = max(1, int(least * (1 - RESERVE) // need))
    by_cpu = max(1, int((cpus or 1e9) // len(free)) - 1) if cpus else by_memory
    per_gpu, limit = min((by_memory, "memory"), (by_cpu, "CPU cores"), (THROUGHPUT_CAP, "throughput cap"))
    why = (f"{per_gpu} trial(s) per GPU ({limit}): {need:.1f} GB per trial (training + context + detection tiles "
           f"{config.detect.tile}), {least:.0f} GB free; memory alone fits {by_memory}")
    log.info(why)
    return Packing(round(1.0 / per_gpu, 4), per_gpu, need, least, why)
