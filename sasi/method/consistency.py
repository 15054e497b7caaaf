"""Self-interpreted consistency guidance (spec §2.8).

For a random exactly invertible grid transform ``T`` (axis flips, 90° rotations in the three
planes, integer shift), the network's own prediction on ``x``, transformed, supervises its
prediction on ``T(x)``: ``L(f(T(x)), stopgrad(T(softmax(f(x)))))`` with the supervised loss,
restricted to voxels present in both views.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor, nn

from sasi.errors import SasiError
from sasi.method import IGNORE
from sasi.method.grid import PLANES, Warp, flip_matrix, invert, rot90_matrix
from sasi.method.losses import LossParts
from sasi.transfer import to_device

TARGETS = ("hard", "soft")


@dataclass(frozen=True, kw_only=True)
class ConsistencyConfig:
    """Consistency-guidance settings.

    ``weight`` is λ_cons; the term is on during the first ``active_fraction`` of the supervised
    iterations (paper: before epoch 4000 of 8000; every epoch has the same number of iterations, so
    the fraction is the same). ``during_pretrain`` (paper: yes) also applies it to the unlabelled
    windows of the SSL steps (ISS, and PSS phases while active); there, with no supervised loss, a
    hard target from an untrained decoder is solved at zero loss by predicting one class everywhere.
    ``target``: ``"hard"`` (argmax, the paper's "predicted class") or ``"soft"`` (probabilities).
    """

    enabled: bool = False
    weight: float = 1.0
    active_fraction: float = 0.5
    target: str = "hard"
    confidence: float = 0.0
    max_shift: int = 4
    flips: bool = True
    rotations: bool = True
    during_pretrain: bool = True

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise SasiError(f"consistency: target must be one of {TARGETS}, got {self.target!r}")
        if not 0.0 <= self.confidence < 1.0 or self.max_shift < 0:
            raise SasiError(f"consistency: need 0 <= confidence < 1 and max_shift >= 0, got {self.confidence}, {self.max_shift}")
        if not 0.0 <= self.active_fraction <= 1.0:
            raise SasiError(f"consistency: active_fraction must be in [0, 1], got {self.active_fraction}")

    def active(self, step: int, iterations: int) -> bool:
        """Whether the term is on at 0-based supervised iteration ``step`` of ``iterations``."""
        return self.enabled and step < self.active_fraction * iterations

    def active_in_ssl(self, step: int, iterations: int) -> bool:
        """Whether an SSL step taken before supervised iteration ``step`` adds the term."""
        return self.during_pretrain and self.active(step, iterations)


@dataclass
class GridTransform:
    """An exactly invertible voxel-grid transform ``out[p] = in[A (p − c) + c + o]``.

    ``A`` is a signed permutation and ``o`` integer, so :meth:`apply` and :meth:`invert` copy
    voxels exactly. Voxels shifted in from outside the crop are filled with 0 (floating point)
    or ``IGNORE`` (integer); :attr:`valid_mask` marks the others.
    """

    matrix: Tensor
    offset: Tensor
    shape: tuple[int, int, int]

    @property
    def inverse(self) -> GridTransform:
        return GridTransform(*invert(self.matrix, self.offset), self.shape)

    @cached_property
    def valid_mask(self) -> Tensor:
        """``(D, H, W)`` bool on the transform's device: voxels of ``apply``'s output whose source is inside the crop."""
        return Warp(self.matrix, self.offset, self.shape, device=self.matrix.device).valid[0]

    def apply(self, t: Tensor) -> Tensor:
        """Transform ``(B, C, D, H, W)`` images/probabilities or ``(B, D, H, W)`` label maps."""
        if tuple(t.shape[-3:]) != tuple(self.shape) or t.dim() not in (4, 5):
            raise SasiError(f"transform for {tuple(self.shape)} got a tensor of shape {tuple(t.shape)}")
        volume = t.unsqueeze(1) if t.dim() == 4 else t
        out = Warp(self.matrix, self.offset, self.shape, "zeros", t.device)(
            volume, fill=0.0 if t.is_floating_point() else IGNORE)
        return out.squeeze(1) if t.dim() == 4 else out

    def invert(self, t: Tensor) -> Tensor:
        """Undo :meth:`apply`: ``invert(apply(t)) == t`` on ``inverse.valid_mask`` (everywhere without shift)."""
        return self.inverse.apply(t)


def sample_transform(generator: torch.Generator | None, shape: Sequence[int], max_shift: int,
                     flips: bool = True, rotations: bool = True) -> GridTransform:
    """Random flips (each axis p = 1/2), rotations k·90° in each plane (k uniform; only 0/180°
    for non-square planes) and an integer shift uniform in ``±max_shift`` per axis.

    ``generator`` is a CPU generator (``None``: the global one).
    """
    shape = tuple(int(s) for s in shape)
    matrix = flip_matrix(torch.rand(3, generator=generator) < 0.5) if flips else torch.eye(3)
    if rotations:
        for plane, (a, b) in enumerate(PLANES):
            k = int(torch.randint(4, (1,), generator=generator))
            matrix = rot90_matrix(plane, k if shape[a] == shape[b] else 2 * (k % 2)) @ matrix
    offset = torch.randint(-max_shift, max_shift + 1, (3,), generator=generator).float()
    return GridTransform(matrix, offset, shape)


def consistency_loss(model: nn.Module, x: Tensor, transform: GridTransform,
                     loss_fn: Callable[[Tensor, Tensor, Tensor | None], LossParts],
                     target: str = "hard", confidence: float = 0.0) -> LossParts:
    """Consistency loss ``loss_fn(f(T(x)), stopgrad(T(softmax(f(x)))), valid)``.

    Parameters
    ----------
    model
        Maps ``(B, 1, D, H, W)`` to logits ``(B, C, D, H, W)``; used as is (train mode).
    x
        Input crops.
    transform
        From :func:`sample_transform` for ``x``'s spatial shape.
    loss_fn
        E.g. :class:`~sasi.method.losses.SegmentationLoss`; called with a voxel weight.
    target
        ``"hard"``: argmax labels, voxels with max probability below ``confidence`` ignored;
        ``"soft"``: the transformed probabilities.
    """
    if target not in TARGETS:
        raise SasiError(f"consistency: target must be one of {TARGETS}, got {target!r}")
    with torch.no_grad():
        logits = model(x)
    tgt, weight = consistency_target(logits, transform, target, confidence)
    return loss_fn(model(transform.apply(x)), tgt, weight)


def consistency_target(logits: Tensor, transform: GridTransform, target: str = "hard",
                       confidence: float = 0.0) -> tuple[Tensor, Tensor]:
    """Stop-gradient target ``T(softmax(logits))`` and its voxel weight (valid overlap), batched.

    Lets a training step run ``f(x)`` and ``f(T(x))`` in one forward pass and build the target
    from the first half.
    """
    with torch.no_grad():
        probs = transform.apply(torch.softmax(logits.detach().float(), dim=1))
        if target == "soft":
            tgt = probs
        else:
            conf, tgt = probs.max(dim=1)
            if confidence > 0:
                tgt = tgt.masked_fill(conf < confidence, IGNORE)
    weight = to_device(transform.valid_mask, logits.device).expand(logits.shape[0], *transform.shape).float()
    return tgt, weight
