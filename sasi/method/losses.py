"""Supervised segmentation loss L = λ_dice·Dice + λ_focal·Focal (spec §2.5).

Targets are either hard labels ``(B, D, H, W)`` int64 (``IGNORE`` = -1 voxels are dropped) or
soft class probabilities ``(B, C, D, H, W)`` float (e.g. mixed one-hot weights of volume infill).
A soft row may sum to less than 1: the rest is unknown content, so the voxel counts with weight =
the row sum (0 = ignored) and the row is renormalised. An optional voxel weight ``(B, D, H, W)``
(e.g. a 0/1 validity mask) multiplies every voxel's contribution to both terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sasi.method import IGNORE


@dataclass(frozen=True, kw_only=True)
class LossConfig:
    """Weights and shape parameters of the supervised loss (paper: 20 : 1; γ = 2 proposed)."""

    dice_weight: float = 20.0
    focal_weight: float = 1.0
    gamma: float = 2.0
    smooth: float = 1e-5


class LossParts(NamedTuple):
    """Weighted total and the two unweighted parts."""

    total: Tensor
    dice: Tensor
    focal: Tensor


def target_probabilities(target: Tensor, n_classes: int, weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Turn a hard or soft target into ``(probabilities (B,C,D,H,W), voxel weight (B,D,H,W))``.

    Hard targets become one-hot with weight 0 on ``IGNORE`` voxels; soft rows are renormalised and
    weighted by their sum; ``weight`` (if given) multiplies the result.
    """
    if target.is_floating_point():
        w = target.float().sum(1)
        probs = target.float() / w.clamp_min(1e-12).unsqueeze(1)
    else:
        valid = target != IGNORE
        probs = F.one_hot(target.clamp_min(0), n_classes).movedim(-1, 1).float()
        w = valid.float()
    if weight is not None:
        w = w * weight.float()
    return probs, w


def soft_dice_loss(probs: Tensor, target: Tensor, weight: Tensor, smooth: float = 1e-5) -> Tensor:
    """1 − mean over classes (background included) of the weighted soft Dice.

    Sums run over the batch and all voxels (batch Dice), so a class absent from both the target
    and the prediction scores Dice 1.
    """
    w = weight.unsqueeze(1)
    dims = (0, *range(2, probs.dim()))
    inter = (w * probs * target).sum(dims)
    denom = (w * probs).sum(dims) + (w * target).sum(dims)
    return 1.0 - ((2.0 * inter + smooth) / (denom + smooth)).mean()


def focal_loss(log_probs: Tensor, target: Tensor, weight: Tensor, gamma: float = 2.0) -> Tensor:
    """Weighted voxel mean of −Σ_c t_c (1 − p_c)^γ log p_c (Lin et al. 2017, no α).

    For one-hot targets this is the usual −(1 − p_t)^γ log p_t; returns 0 if all weights are 0.
    """
    one_minus_p = (-torch.expm1(log_probs)).clamp_min(1e-12)  # clamp keeps γ < 1 finite at p = 1
    per_class = one_minus_p.pow(gamma) * log_probs
    per_voxel = -(target * per_class).sum(1)
    return (weight * per_voxel).sum() / weight.sum().clamp_min(1e-12)


class SegmentationLoss(nn.Module):
    """Dice + Focal on logits ``(B, C, D, H, W)``; see the module docstring for targets."""

    def __init__(self, dice_weight: float = 20.0, focal_weight: float = 1.0, gamma: float = 2.0, smooth: float = 1e-5):
        super().__init__()
        self.dice_weight, self.focal_weight = dice_weight, focal_weight
        self.gamma, self.smooth = gamma, smooth

    @classmethod
    def from_config(cls, config: LossConfig) -> SegmentationLoss:
        return cls(config.dice_weight, config.focal_weight, config.gamma, config.smooth)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> LossParts:
        """Return :class:`LossParts` for hard or soft ``target`` and optional voxel ``weight``."""
        log_probs = F.log_softmax(logits.float(), dim=1)
        probs_t, w = target_probabilities(target, logits.shape[1], weight)
        dice = soft_dice_loss(log_probs.exp(), probs_t, w, self.smooth)
        focal = focal_loss(log_probs, probs_t, w, self.gamma)
        return LossParts(self.dice_weight * dice + self.focal_weight * focal, dice, focal)
