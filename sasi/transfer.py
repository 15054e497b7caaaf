"""Host → device copies that do not stall the GPU queue."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

NON_BLOCKING = True  # False: plain blocking copies (only to measure what this saves: benchmarks/train_step.py)


def to_device(t: Tensor, device: torch.device | str | None, dtype: torch.dtype | None = None) -> Tensor:
    """``t`` (cast to ``dtype``) on ``device``, without waiting for the GPU.

    A plain ``.to("cuda")`` of a host tensor copies from pageable memory and synchronises the stream, so the
    host waits for all queued kernels; the small random parameters drawn on the host every training step would
    then serialise host and GPU. Host tensors bound for CUDA go through pinned memory with a non-blocking copy
    (PyTorch's pinned allocator keeps the buffer until the copy is done).
    """
    if dtype is not None:
        t = t.to(dtype)
    device = t.device if device is None else torch.device(device)
    if NON_BLOCKING and device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@lru_cache(maxsize=256)
def _constant(values: tuple[float, ...], device: torch.device) -> Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)


def device_constant(values: tuple[float, ...] | list[float], device: torch.device | str | None) -> Tensor:
    """A small float32 constant on ``device``, made once and then shared (read-only): a step captured as a CUDA
    graph may not copy from the host, so the constants its first (eager) run made are the ones it reuses."""
    return _constant(tuple(float(v) for v in values), torch.device(device or "cpu"))
