"""One supervised step's batch, in two halves: the random parameters drawn on the host (:func:`draw_supervised`,
a few small CPU tensors) and the batch built from them on the device with fixed-shape tensor ops
(:func:`build_supervised`). The split lets :mod:`sasi.train.step_graph` replay the device half, with the
network, loss and optimiser, as one CUDA graph; the draws (and so the maths) are those of the eager step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from sasi.method.consistency import GridTransform, sample_transform
from sasi.method.infill import InfillDraw, apply_infill, draw_infill, infill_active
from sasi.train.crops import crop, random_flips, random_rotations
from sasi.train.step_graph import map_tensors
from sasi.transfer import to_device

if TYPE_CHECKING:
    from sasi.train.config import SasiConfig
    from sasi.train.data import TrainingData

CPU = torch.device("cpu")


class SupervisedDraw(NamedTuple):
    """The random parameters of one supervised step, in the order the generator draws them."""

    centres: Tensor  # (B, 3) crop centres (z, y, x voxels), shift included
    rotations: Tensor  # (B, 3, 3) crop rotations (or flips)
    infill: InfillDraw | None  # None: infill off
    transform: tuple[Tensor, Tensor] | None  # consistency T as (3, 3) matrix and (3,) offset; None: term off

    def to(self, device: torch.device | str | None) -> SupervisedDraw:
        return map_tensors(lambda t: to_device(t, device), self)


def supervised_centres(data: TrainingData, batch: int, generator: torch.Generator) -> Tensor:
    """Class-balanced particle centres: each batch cycles through the labelled classes."""
    offset = int(torch.randint(len(data.centres), (1,), generator=generator))
    pools = [(i + offset) % len(data.centres) for i in range(batch)]
    sizes = torch.tensor([len(data.centres[c]) for c in pools])
    picks = (torch.rand(batch, generator=generator) * sizes).long()
    return torch.stack([data.centres[c][int(k)] for c, k in zip(pools, picks.tolist())])


def draw_supervised(data: TrainingData, config: SasiConfig, generator: torch.Generator,
                    consistency: bool) -> SupervisedDraw:
    """Draw one step's parameters on the host: centres, shifts, rotations, infill chains, consistency ``T``."""
    cfg, b = config.data, config.train.batch_size
    centres = supervised_centres(data, b, generator)
    shift = (torch.rand(b, 3, generator=generator) * 2 - 1) * cfg.shift_fraction * cfg.patch
    rotations = (random_rotations if cfg.rotate else random_flips)(b, generator, CPU)
    size = (cfg.patch,) * 3
    infill = draw_infill(b, size, config.infill, generator) if infill_active(config.infill) else None
    transform = None
    if consistency:
        c = config.consistency
        t = sample_transform(generator, size, c.max_shift, c.flips, c.rotations)
        transform = (t.matrix, t.offset)
    return SupervisedDraw(centres + shift, rotations, infill, transform)


def build_supervised(data: TrainingData, draw: SupervisedDraw, config: SasiConfig,
                     n_classes: int) -> tuple[Tensor, Tensor, GridTransform | None]:
    """The batch of ``draw`` (on the device): input crops (with ``T(x)`` appended when the consistency term is
    on), their labels, and ``T``."""
    patch = config.data.patch
    image, mask = crop(data.volume, draw.centres, patch, draw.rotations, data.labels)
    if draw.infill is not None:
        image, mask = apply_infill(image, mask, n_classes, config.infill, draw.infill)
    if draw.transform is None:
        return image, mask, None
    t = GridTransform(*draw.transform, (patch,) * 3)
    return torch.cat([image, t.apply(image)]), mask, t
