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

Masks are mixed the same way as one-hot maps (``IGNORE`` is an extra channel): each voxel gets the
mixed weight ``a_c`` of every class (the amplitude at which the image shows class ``c`` there).
``mask_rule`` turns these into the training target:

- ``"foreground"`` (default; our reading of the paper's Fig. 3, where every copy stays labelled): the
  foreground class with the largest ``a_c`` if any ``a_c > 0``, else ``IGNORE`` if unknown content is
  mixed in, else background. Faint copies (``a_c`` ≈ 0.1) are labelled particle, and where copies of
  two classes meet the larger weight wins, so a voxel can change class;
- ``"argmax"``: the literal argmax over background, classes and ignore (first maximum on ties);
- ``"dominant"`` (label-faithful, hard): class ``c`` only where ``a_c ≥ label_weight`` and ``c`` carries
  the largest weight; else ``IGNORE`` where some class (or unknown content) has weight ≥
  ``ignore_weight``; else background. Overlap rule: a voxel claimed (``a_c ≥ ignore_weight``) by two
  different classes is ``IGNORE``, so a voxel still showing class A (at ≥ ``ignore_weight``) never
  becomes class B;
- ``"soft"`` (label-faithful, soft; TopCUP/MixUp): the target *is* ``(a_0, …, a_{C-1})``, a float
  ``(B, C, D, H, W)`` map whose rows sum to 1 − the unknown weight (the loss weights voxels by that sum).

``restandardise`` rescales each mixed crop to the mean and standard deviation of its unmixed source:
a mix of ``m + 1`` weakly correlated crops has variance ≈ ``(1 − λ)² + λ² Σ w_i²`` (≈ 0.5), while the
network (no normalisation layers) is applied to unmixed, z-scored tomograms at test time.

Flips are the only mirroring op: ``ops=("shift", "rotate90", "rotate")`` with ``padding="wrap"`` adds
neither mirror images (chiral particles never appear mirrored at test time) nor zero-filled regions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from sasi.errors import SasiError
from sasi.method import IGNORE
from sasi.method.grid import (
    PADDINGS,
    PLANES,
    Warp,
    quaternion_matrices,
    rot90_matrix,
)
from sasi.transfer import to_device

OPS = ("shift", "flip", "rotate90", "rotate")
MASK_RULES = ("foreground", "argmax", "dominant", "soft")
PROPER_OPS = ("shift", "rotate90", "rotate")
"""Ops without mirror images (no flips)."""


@dataclass(frozen=True, kw_only=True)
class InfillConfig:
    """Volume-infill settings; defaults are the paper's α = 1 and AugMix's m = 3, k ≤ 3, Beta(1, 1).

    ``density`` ∈ [0, 1] scales the weight of the augmented copies: ``λ = density · (1 − β)``, so
    the expected mixed weight of the copies is ``density · E[1 − β]`` (``density / 2`` for a
    symmetric Beta); 0 leaves the image unchanged, 1 is plain AugMix. It does not change the
    labels of a mixed sample (copies stay labelled under the ``"foreground"`` rule).

    ``label_weight`` / ``ignore_weight`` are the ``"dominant"`` rule's thresholds on a class's mixed
    weight (hard label at ≥ 0.5, ignore from 0.1: peers' label-faithful mixing, see
    ``research/detection-and-mixing-peers.md`` §2); ``restandardise`` matches each mixed crop's mean
    and std to its source's (off in the paper).
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
    label_weight: float = 0.5
    ignore_weight: float = 0.1
    restandardise: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))  # frozen: YAML gives a list
        checks = [
            (0.0 <= self.probability <= 1.0, f"probability must be in [0, 1], got {self.probability}"),
            (0.0 <= self.density <= 1.0, f"density must be in [0, 1], got {self.density}"),
            (self.width >= 1 and self.depth >= 1, f"width and depth must be >= 1, got {self.width}, {self.depth}"),
            (self.dirichlet_alpha > 0 and self.beta_param > 0, "dirichlet_alpha and beta_param must be > 0"),
            (self.shift_fraction >= 0, f"shift_fraction must be >= 0, got {self.shift_fraction}"),
            (0.0 <= self.ignore_weight <= self.label_weight <= 1.0 and self.label_weight > 0,
             f"need 0 <= ignore_weight <= label_weight <= 1, label_weight > 0, got {self.ignore_weight}, {self.label_weight}"),
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
        mats = quaternion_matrices(torch.from_numpy(rng.standard_normal((n, 4)))).float().numpy()
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


def class_weights(sources: Tensor, weights: Tensor, n_classes: int) -> Tensor:
    """Mixed one-hot weights ``(B, C + 1, D, H, W)`` of ``(B, S, D, H, W)`` label maps mixed with ``(B, S)``
    weights; channel ``c < C`` is class ``c``'s amplitude, the last channel unknown content (``IGNORE``)."""
    channel = torch.where(sources == IGNORE, n_classes, sources)
    acc = torch.zeros(sources.shape[0], n_classes + 1, *sources.shape[2:], device=sources.device)
    acc.scatter_add_(1, channel, weights[:, :, None, None, None].expand(channel.shape).to(acc.dtype))
    return acc


def resolve_labels(acc: Tensor, config: InfillConfig) -> Tensor:
    """Mixed weights from :func:`class_weights` → the target of ``config.mask_rule`` (see module docstring)."""
    n_classes = acc.shape[1] - 1
    unknown = acc[:, n_classes]
    if config.mask_rule == "soft":
        return acc[:, :n_classes]
    if config.mask_rule == "argmax":
        best = acc.argmax(1)
        return torch.where(best == n_classes, IGNORE, best)
    fg = acc[:, 1:n_classes]
    best_w, best = fg.max(1)
    if config.mask_rule == "foreground":
        return torch.where(best_w > 0, best + 1, torch.where(unknown > 0, IGNORE, 0))
    claims = (fg > 0) & (fg >= config.ignore_weight)
    labelled = (best_w >= config.label_weight) & (best_w >= acc.amax(1)) & (claims.sum(1) <= 1)
    unsure = claims.any(1) | ((unknown > 0) & (unknown >= config.ignore_weight))
    return torch.where(labelled, best + 1, torch.where(unsure, IGNORE, 0))


def _restandardise(mixed: Tensor, source: Tensor) -> Tensor:
    """``mixed`` with each crop's mean and std set to those of its unmixed ``source`` crop."""
    dims = tuple(range(1, mixed.dim()))
    m_std, m_mean = torch.std_mean(mixed.float(), dim=dims, keepdim=True)
    s_std, s_mean = torch.std_mean(source.float(), dim=dims, keepdim=True)
    return ((mixed.float() - m_mean) / m_std.clamp_min(1e-6) * s_std + s_mean).to(mixed.dtype)


class InfillDraw(NamedTuple):
    """The random parameters of one infill call, drawn on the host (:func:`draw_infill`); :func:`apply_infill`
    uses them on the crops' device (a training step captured as a CUDA graph copies them into fixed buffers)."""

    applied: Tensor  # (B,) bool: crop is mixed
    weights: Tensor  # (B, width) Dirichlet weights of the chains
    lam: Tensor  # (B,) weight of the mixed-in copies, 0 where not applied
    matrices: Tensor  # (B·width, 3, 3) composed chain maps
    offsets: Tensor  # (B·width, 3)

    def to(self, device: torch.device | str | None) -> InfillDraw:
        return InfillDraw(*(to_device(t, device) for t in self))


def infill_active(config: InfillConfig) -> bool:
    """Whether ``config`` changes anything (enabled, probability and density above 0)."""
    return config.enabled and config.probability > 0 and config.density > 0


def draw_infill(batch: int, size: tuple[int, ...], config: InfillConfig,
                generator: torch.Generator | None = None) -> InfillDraw:
    """Draw the parameters of one infill of ``batch`` crops of spatial ``size`` (CPU tensors)."""
    rng = _host_rng(generator)
    applied = torch.from_numpy(rng.random(batch) < config.probability)
    w = torch.from_numpy(rng.dirichlet([config.dirichlet_alpha] * config.width, size=batch)).float()
    lam = config.density * (1.0 - torch.from_numpy(rng.beta(config.beta_param, config.beta_param, size=batch)).float())
    mats, offs = _sample_chains(rng, batch, size, config)
    return InfillDraw(applied, w, torch.where(applied, lam, 0.0), mats, offs)


def apply_infill(image: Tensor, mask: Tensor | None, n_classes: int, config: InfillConfig,
                 draw: InfillDraw) -> tuple[Tensor, Tensor | None]:
    """:func:`volume_infill` with the parameters ``draw`` (on the crops' device): tensor ops only, fixed shapes."""
    b, m, size = image.shape[0], config.width, tuple(image.shape[2:])
    applied, w, lam = draw.applied, draw.weights, draw.lam
    mode = "bilinear" if "rotate" in config.ops else "nearest"
    warp = Warp(draw.matrices, draw.offsets, size, config.padding, image.device)
    variants = warp(image.repeat_interleave(m, 0), mode)
    augmented = (w.view(b, m, 1, 1, 1, 1).to(image.dtype) * variants.view(b, m, *image.shape[1:])).sum(1)
    lam_x = lam.view(b, 1, 1, 1, 1).to(image.dtype)
    mixed = (1 - lam_x) * image + lam_x * augmented
    if config.restandardise:
        mixed = _restandardise(mixed, image)
    mixed = torch.where(applied.view(b, 1, 1, 1, 1), mixed, image)
    if mask is None:
        return mixed, None

    labels = warp(mask.repeat_interleave(m, 0).unsqueeze(1), fill=0)
    if config.padding == "border":
        labels = labels.masked_fill(~warp.valid.unsqueeze(1), IGNORE)
    sources = torch.cat([mask.unsqueeze(1), labels.view(b, m, *size)], dim=1)
    weights = torch.cat([(1 - lam).unsqueeze(1), lam.unsqueeze(1) * w], dim=1)
    # crops not mixed have λ = 0: every rule returns their labels (one-hot for "soft") unchanged
    return mixed, resolve_labels(class_weights(sources, weights, n_classes), config)


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
        CPU generator; the few random parameters per crop are drawn on the host (:func:`draw_infill`)
        and the warp and mixing run on the crops' device (:func:`apply_infill`).

    Returns
    -------
    Mixed image (same dtype) and mixed mask (``None`` if ``mask`` is ``None``): int64 labels, or
    for ``mask_rule="soft"`` float class weights ``(B, C, D, H, W)`` (also for crops not mixed).
    Crops not selected (probability ``1 − probability``) are returned unchanged.
    """
    if not infill_active(config):
        return image, mask
    if n_classes < 2:
        raise SasiError(f"infill: n_classes must be >= 2, got {n_classes}")
    draw = draw_infill(image.shape[0], tuple(image.shape[2:]), config, generator)
    return apply_infill(image, mask, n_classes, config, draw.to(image.device))


def label_faithfulness(mask: Tensor, n_classes: int, config: InfillConfig, seed: int = 0,
                       amplitude: float = 0.5) -> dict[str, float]:
    """How faithfully ``config.mask_rule`` labels infilled crops (issue 17's check), for ``(B, D, H, W)`` labels.

    ``faint_share``: of the foreground label mass, the share on voxels where the labelled class is
    mixed in at < ``amplitude`` (hard labels: the share of foreground-labelled voxels; ``"soft"``
    targets only ask for the amplitude itself there). ``excess_share``: the share of foreground label
    mass the image does not show, ``Σ (label_c − a_c)⁺ / Σ label_c`` (0 for ``"soft"``).
    ``foreground_ratio``: foreground label mass after / before infill. Every crop is mixed; the same ``seed`` gives the same draws for every rule.
    """
    config = replace(config, enabled=True, probability=1.0)
    image = torch.zeros(mask.shape[0], 1, *mask.shape[1:])

    def draw(rule: str) -> Tensor:
        return volume_infill(image, mask, n_classes, replace(config, mask_rule=rule), torch.Generator().manual_seed(seed))[1]

    weights, labels = draw("soft"), draw(config.mask_rule)
    if not labels.is_floating_point():
        labels = torch.nn.functional.one_hot(labels.clamp_min(0), n_classes).movedim(-1, 1) * (labels >= 0).unsqueeze(1)
    fg, amp = labels[:, 1:].float(), weights[:, 1:]
    mass = fg.sum().clamp_min(1e-12)
    return {"faint_share": float((fg * (amp < amplitude)).sum() / mass),
            "excess_share": float((fg - amp).clamp_min(0).sum() / mass),
            "foreground_ratio": float(fg.sum() / (mask > 0).sum().clamp_min(1))}
