"""Batched crops from a tomogram held on the device: one ``grid_sample`` per batch, no CPU round trips.

A crop is a ``W³`` cube centred on a (shifted) point and optionally rotated about it; sampling the
whole tomogram means rotations never zero-fill inside the volume (the paper's √2·W trick, for free).
Labels are sampled with nearest neighbour; voxels outside the tomogram become ``IGNORE``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from sasi.method import IGNORE
from sasi.method.grid import quaternion_matrices
from sasi.transfer import device_constant, to_device


def random_rotations(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``(n, 3, 3)`` uniformly random rotation matrices (from normalised Gaussian quaternions)."""
    return to_device(quaternion_matrices(torch.randn(n, 4, generator=generator)), device)


def random_flips(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``(n, 3, 3)`` diagonal ±1 matrices (each axis flipped with p = 1/2)."""
    signs = torch.where(torch.rand(n, 3, generator=generator) < 0.5, -1.0, 1.0)
    return to_device(torch.diag_embed(signs), device)


def crop(volume: Tensor, centres: Tensor, size: int, rotations: Tensor | None = None,
         labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Sample ``(B, 1, W, W, W)`` image crops (and ``(B, W, W, W)`` label crops).

    ``volume``: ``(D, H, W)`` float; ``labels``: ``(D, H, W)`` int; ``centres``: ``(B, 3)`` z, y, x
    voxels (float); ``rotations``: ``(B, 3, 3)`` acting on z, y, x offsets (``None``: axis-aligned).
    """
    b = centres.shape[0]
    device = volume.device
    offsets = torch.arange(size, device=device, dtype=torch.float32) - (size - 1) / 2
    grid = torch.stack(torch.meshgrid(offsets, offsets, offsets, indexing="ij"), dim=-1)  # (W,W,W,3) zyx
    grid = grid.reshape(1, -1, 3).expand(b, -1, -1)
    if rotations is not None:
        grid = grid @ rotations.transpose(1, 2).to(grid.dtype)
    points = grid + to_device(centres, device, torch.float32)[:, None, :]
    extent = device_constant([s - 1 for s in volume.shape], device)
    normed = (2 * points / extent - 1).flip(-1)  # grid_sample wants x, y, z in [-1, 1]
    normed = normed.reshape(b, size, size, size, 3)
    image = F.grid_sample(volume[None, None].expand(b, -1, -1, -1, -1), normed, mode="bilinear",
                          padding_mode="zeros", align_corners=True)
    if labels is None:
        return image, None
    shifted = (labels.to(torch.float32) - IGNORE)[None, None].expand(b, -1, -1, -1, -1)
    lab = F.grid_sample(shifted, normed, mode="nearest", padding_mode="zeros", align_corners=True)
    return image, lab[:, 0].round().long() + IGNORE


def window_centres(shape: tuple[int, int, int], size: int, stride: int) -> Tensor:
    """Centres (z, y, x) of a sliding window of ``size`` with ``stride`` covering the volume."""
    axes = []
    for s in shape:
        n = max(1, math.ceil((s - size) / stride) + 1)
        starts = torch.linspace(0, max(s - size, 0), n).round()
        axes.append(starts + (size - 1) / 2)
    return torch.cartesian_prod(*axes).reshape(-1, 3)
