"""Self-augmented volume infill: AugMix for cryo-ET crops (spec §2.6).

For every crop ``x`` of a batch, ``width`` chains of ``k ~ U{1..depth}`` random spatial ops give
variants ``x'_i``; with ``w ~ Dirichlet(α)`` and skip weight ``β ~ Beta(b, b)``

    x_mix = (1 − λ) x + λ Σ_i w_i x'_i,        λ = density · (1 − β)

(``density = 1`` is the paper's ``β x + (1 − β) Σ w_i x'_i``). Each chain is composed into one
voxel-index affine map and the whole batch is warped at once on the crops' device.

Ops (``InfillConfig.ops``):

- ``"shift"``: integer shift, per axis uniform in ``±round(shift_fraction · size)``;
- ``"flip"``: flip each axis with probability 1/2;
- ``"rotate90"``: k·90° in a random plane (k ∈ {1, 2, 3}; only k = 2 if the plane is not square);
- ``"rotate"``: uniform random rotation about the centre (trilinear image, nearest mask).

Voxels whose source falls outside the crop (shifts, arbitrary rotations) follow ``padding``:
``"zeros"`` fills the image with 0 (the mean of a z-scored tomogram) and labels background (there
is no particle there); ``"border"`` repeats the edge voxel and labels it ``IGNORE`` (content
unknown); ``"wrap"`` rolls periodically, carrying the labels along.

Masks are mixed the same way as one-hot maps (``IGNORE`` is an extra channel) and resolved per
voxel by ``mask_rule``: ``"foreground"`` picks the foreground class with the largest mixed weight
if any foreground weight is > 0, else ``IGNORE`` if any ignore weight is > 0, else background
(so every copy stays labelled, as in the paper's Fig. 3); ``"argmax"`` takes the literal argmax
over background, classes and ignore (first maximum on ties).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sasi.errors import SasiError
from sasi.method import IGNORE
from sasi.method.grid import (
    PADDINGS,
    PLANES,
    Warp,
    quaternion_matrix,
    rot90_matrix,
)
from sasi.transfer import to_device

OPS = ("shift", "flip", "rotate90", "rotate")
MASK_RULES = ("foreground", "argmax")


@dataclass
class InfillConfig:
    """Volume-infill settings; defaults are the paper's α = 1 and AugMix's m = 3, k ≤ 3, Beta(1, 1).

    ``density`` ∈ [0, 1] scales the weight of the augmented copies: ``λ = density · (1 − β)``, so
    the expected mixed weight of the copies is ``density · E[1 − β]`` (``density / 2`` for a
    symmetric Beta); 0 leaves the image unchanged, 1 is plain AugMix. It does not change the
    labels of a mixed sample (copies stay labelled under the ``"foreground"`` rule).
    """

    enabled: bool = True
    probability: float = 1.0
    width: int = 3
    depth: int = 3
    dirichlet_alpha: float = 1.0
    beta_param: float = 1.0
    shift_fraction: float = 0.5
    mask_rule: str = "foreground"
    density: float = 1.0
    ops: tuple[str, ...] = ("shift", "flip", "rotate90")
    padding: str = "zeros"

    def __post_init__(self) -> None:
        self.ops = tuple(self.ops)
        checks = [
            (0.0 <= self.probability <= 1.0, f"probability must be in [0, 1], got {self.probability}"),
            (0.0 <= self.density <= 1.0, f"density must be in [0, 1], got {self.density}"),
            (self.width >= 1 and self.depth >= 1, f"width and depth must be >= 1, got {self.width}, {self.depth}"),
            (self.dirichlet_alpha > 0 and self.beta_param > 0, "dirichlet_alpha and beta_param must be > 0"),
            (self.shift_fraction >= 0, f"shift_fraction must be >= 0, got {self.shift_fraction}"),
            (self.mask_rule in MASK_RULES, f"mask_rule must be one of {MASK_RULES}, got {self.mask_rule!r}"),
            (self.padding in PADDINGS, f"padding must be one of {PADDINGS}, got {self.padding!r}"),
            (bool(self.ops) and set(self.ops) <= set(OPS), f"ops must be a non-empty subset of {OPS}, got {self.ops}"),
        ]
        for ok, message in checks:
            if not ok:
                raise SasiError(f"infill: {message}")


def _host_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A NumPy generator seeded from the (CPU) torch generator, for Gamma-based draws."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))


def _random_ops(name: str, rng: np.random.Generator, n: int, size: tuple[int, ...],
                shift_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random ops of one kind as index maps: ``(n, 3, 3)`` matrices and ``(n, 3)`` offsets."""
    mats, offs = np.broadcast_to(np.eye(3), (n, 3, 3)).copy(), np.zeros((n, 3))
    if name == "shift":
        s = np.round(shift_fraction * np.asarray(size)).astype(np.int64)
        offs = rng.integers(-s, s + 1, size=(n, 3)).astype(np.float64)
    elif name == "flip":
        mats = mats * np.where(rng.random((n, 1, 3)) < 0.5, -1.0, 1.0)
    elif name == "rotate90":
        plane = rng.integers(3, size=n)
        k = rng.integers(1, 4, size=n)
        square = np.array([size[a] == size[b] for a, b in PLANES])
        k = np.where(square[plane], k, 2)
        mats = _ROT90[plane, k]
    else:
        mats = np.stack([quaternion_matrix(q).numpy() for q in rng.standard_normal((n, 4))]) if n else mats
    return mats, offs


_ROT90 = np.stack([np.stack([rot90_matrix(plane, k).numpy() for k in range(4)]) for plane in range(3)])


def _sample_chains(rng: np.random.Generator, n: int, size: tuple[int, ...], cfg: InfillConfig) -> tuple[Tensor, Tensor]:
    """``(n·width, 3, 3)`` matrices and ``(n·width, 3)`` offsets, one composed chain each.

    Each chain has ``k ~ U{1..depth}`` ops drawn uniformly from ``cfg.ops``; drawn for all chains at
    once on the host (a few vectorised NumPy calls per step, no per-op tensors).
    """
    chains = n * cfg.width
    mats, offs = np.broadcast_to(np.eye(3), (chains, 3, 3)).copy(), np.zeros((chains, 3))
    length = rng.integers(1, cfg.depth + 1, size=chains)
    for step in range(cfg.depth):
        kind = rng.integers(len(cfg.ops), size=chains)
        for i, name in enumerate(cfg.ops):
            rows = np.flatnonzero((kind == i) & (step < length))
            a, o = _random_ops(name, rng, len(rows), size, cfg.shift_fraction)
            # compose(chain, op): A ← A·A_op, o ← A·o_op + o
            offs[rows] = np.einsum("nij,nj->ni", mats[rows], o) + offs[rows]
            mats[rows] = mats[rows] @ a
    return torch.from_numpy(mats).float(), torch.from_numpy(offs).float()


def _mix_labels(sources: Tensor, weights: Tensor, n_classes: int, rule: str) -> Tensor:
    """Resolve ``(B, S, D, H, W)`` label maps mixed with ``(B, S)`` weights into one label map."""
    channel = torch.where(sources == IGNORE, n_classes, sources)
    acc = torch.zeros(sources.shape[0], n_classes + 1, *sources.shape[2:], device=sources.device)
    acc.scatter_add_(1, channel, weights[:, :, None, None, None].expand(channel.shape).to(acc.dtype))
    if rule == "argmax":
        best = acc.argmax(1)
        return torch.where(best == n_classes, IGNORE, best)
    fg = acc[:, 1:n_classes]
    background = torch.where(acc[:, n_classes] > 0, IGNORE, 0)
    return torch.where(fg.amax(1) > 0, fg.argmax(1) + 1, background)


def volume_infill(image: Tensor, mask: Tensor | None, n_classes: int, config: InfillConfig,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
    """Self-augmented volume infill of a batch of crops.

    Parameters
    ----------
    image
        ``(B, C, D, H, W)`` floating-point crops (any device).
    mask
        ``(B, D, H, W)`` int64 labels in ``{IGNORE, 0..n_classes-1}``, or ``None`` (e.g. SSL views).
    n_classes
        Number of classes, background included (≥ 2).
    config
        See :class:`InfillConfig`; a disabled config or ``probability``/``density`` 0 returns the
        inputs themselves.
    generator
        CPU generator; the few random parameters per crop are drawn on the host and the warp
        and mixing run on the crops' device.

    Returns
    -------
    Mixed image (same dtype) and mixed mask (``None`` if ``mask`` is ``None``). Crops not
    selected (probability ``1 − probability``) are returned unchanged.
    """
    if not config.enabled or config.probability == 0 or config.density == 0:
        return image, mask
    if n_classes < 2:
        raise SasiError(f"infill: n_classes must be >= 2, got {n_classes}")
    b, m, size = image.shape[0], config.width, tuple(image.shape[2:])
    rng = _host_rng(generator)
    applied = torch.from_numpy(rng.random(b) < config.probability)
    w = torch.from_numpy(rng.dirichlet([config.dirichlet_alpha] * m, size=b)).float()
    lam = config.density * (1.0 - torch.from_numpy(rng.beta(config.beta_param, config.beta_param, size=b)).float())
    lam = torch.where(applied, lam, 0.0)
    mats, offs = _sample_chains(rng, b, size, config)
    dev = image.device
    applied, w, lam = to_device(applied, dev), to_device(w, dev), to_device(lam, dev)

    mode = "bilinear" if "rotate" in config.ops else "nearest"
    warp = Warp(mats, offs, size, config.padding, dev)
    variants = warp(image.repeat_interleave(m, 0), mode)
    augmented = (w.view(b, m, 1, 1, 1, 1).to(image.dtype) * variants.view(b, m, *image.shape[1:])).sum(1)
    lam_x = lam.view(b, 1, 1, 1, 1).to(image.dtype)
    mixed = torch.where(applied.view(b, 1, 1, 1, 1), (1 - lam_x) * image + lam_x * augmented, image)
    if mask is None:
        return mixed, None

    labels = warp(mask.repeat_interleave(m, 0).unsqueeze(1), fill=0)
    if config.padding == "border":
        labels = labels.masked_fill(~warp.valid.unsqueeze(1), IGNORE)
    sources = torch.cat([mask.unsqueeze(1), labels.view(b, m, *size)], dim=1)
    weights = torch.cat([(1 - lam).unsqueeze(1), lam.unsqueeze(1) * w], dim=1)
    mixed_mask = torch.where(applied.view(b, 1, 1, 1), _mix_labels(sources, weights, n_classes, config.mask_rule), mask)
    return mixed, mixed_mask
