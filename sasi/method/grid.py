"""Voxel-index affine maps and a batched warp, shared by volume infill and consistency guidance.

A map ``(A, o)`` sends an output voxel index ``p = (z, y, x)`` to its source index

    q = A (p − c) + c + o,        c = (size − 1) / 2,

so ``out[p] = in[q]``. Flips and 90° rotations (signed permutations ``A``) combined with integer
offsets ``o`` give integer ``q`` on shape-compatible volumes; the nearest-neighbour warp is then
an exact voxel copy (a gather), valid for any dtype. Arbitrary rotations use trilinear
``grid_sample`` for images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from sasi.transfer import device_constant, to_device

PADDINGS = ("zeros", "border", "wrap")
PLANES = ((1, 2), (0, 2), (0, 1))
"""Axis pairs of the three rotation planes (about z, about y, about x)."""


def flip_matrix(flips: Sequence[bool] | Tensor) -> Tensor:
    """Diagonal ±1 matrix flipping the axes where ``flips`` is true."""
    f = torch.as_tensor(flips, dtype=torch.bool)
    return torch.diag(torch.where(f, -1.0, 1.0))


def rot90_matrix(plane: int, k: int) -> Tensor:
    """Rotation by ``k`` × 90° in ``PLANES[plane]`` (shape-preserving if its two sizes match or k is even)."""
    a, b = PLANES[plane]
    r = torch.eye(3)
    r[a, a] = r[b, b] = 0.0
    r[a, b], r[b, a] = 1.0, -1.0  # same sense as torch.rot90(x, k, dims=PLANES[plane])
    return torch.linalg.matrix_power(r, k % 4)


def quaternion_matrices(quaternions: Tensor) -> Tensor:
    """``(N, 3, 3)`` rotation matrices of ``(N, 4)`` (not necessarily unit) quaternions ``(w, x, y, z)``, in their
    dtype. Standard-normal 4-vectors give uniformly distributed (Haar) rotations."""
    q = quaternions / quaternions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)


def compose(outer: tuple[Tensor, Tensor], inner: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """Map of ``p ↦ outer(inner(p))``, i.e. warping by ``outer`` then by ``inner``."""
    (a1, o1), (a2, o2) = outer, inner
    return a1 @ a2, a1 @ o2 + o1


def invert(matrix: Tensor, offset: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse map of an orthogonal ``matrix`` (rotations, flips, their products)."""
    inv = matrix.transpose(-1, -2)
    return inv, -(inv @ offset.unsqueeze(-1)).squeeze(-1)


def source_coordinates(matrix: Tensor, offset: Tensor, size: Sequence[int], device: torch.device | None = None) -> Tensor:
    """Source indices ``q`` as ``(N, D, H, W, 3)`` floats for ``(N, 3, 3)`` or ``(3, 3)`` maps."""
    centre = device_constant([(s - 1) / 2 for s in size], device)
    axes = [torch.arange(s, dtype=torch.float32, device=device) for s in size]
    p = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1) - centre
    a = to_device(matrix, device, torch.float32).reshape(-1, 3, 3)
    o = to_device(offset, device, torch.float32).reshape(-1, 1, 1, 1, 3)
    return torch.einsum("nij,dhwj->ndhwi", a, p) + centre + o


class Warp:
    """Resampling of ``(N, C, D, H, W)`` volumes by ``N`` (or one shared) index maps.

    ``out[n, :, p] = volume[n, :, q_n(p)]``; the source coordinates are computed once and reused
    for every volume warped (e.g. an image and its label map).

    Parameters
    ----------
    matrix, offset
        ``(N, 3, 3)``/``(N, 3)`` per-sample maps, or ``(3, 3)``/``(3,)`` shared by all.
    size
        Spatial size ``(D, H, W)``.
    padding
        Source voxels outside the volume: ``"zeros"`` → a fill value, ``"border"`` → nearest edge
        voxel, ``"wrap"`` → periodic (like ``torch.roll``).
    """

    def __init__(self, matrix: Tensor, offset: Tensor, size: Sequence[int], padding: str = "zeros",
                 device: torch.device | None = None):
        self.size, self.padding = tuple(size), padding
        self.coords = source_coordinates(matrix, offset, self.size, device)
        self._extent = device_constant(self.size, device)
        self._nearest = self.coords.round()
        self.valid = ((self._nearest >= 0) & (self._nearest <= self._extent - 1)).all(-1)
        """``(N, D, H, W)`` bool: the nearest source voxel lies inside the volume."""
        self._flat: Tensor | None = None

    def _wrapped(self, q: Tensor) -> Tensor:
        return torch.remainder(q, self._extent) if self.padding == "wrap" else q

    def _flat_index(self) -> Tensor:
        if self._flat is None:
            q = torch.minimum(self._wrapped(self._nearest).clamp_min(0), self._extent - 1).long()
            d, h, w = self.size
            self._flat = ((q[..., 0] * h + q[..., 1]) * w + q[..., 2]).reshape(q.shape[0], 1, d * h * w)
        return self._flat

    def __call__(self, volume: Tensor, mode: str = "nearest", fill: float = 0.0) -> Tensor:
        """Warp ``volume`` (any dtype for ``"nearest"``, floating point for ``"bilinear"``).

        ``fill`` is written where the source lies outside (``padding="zeros"`` only).
        """
        n, c = volume.shape[:2]
        if mode == "nearest":
            flat = self._flat_index().expand(n, c, -1)
            out = volume.reshape(n, c, -1).gather(2, flat).reshape(volume.shape)
        else:
            grid = (2 * self._wrapped(self.coords) / (self._extent - 1).clamp_min(1) - 1).flip(-1)
            out = F.grid_sample(volume, grid.expand(n, *self.size, 3), mode="bilinear", align_corners=True,
                                padding_mode="zeros" if self.padding == "zeros" else "border")
        if self.padding == "zeros":
            out = out.masked_fill(~self.valid.unsqueeze(1), fill)
        return out
