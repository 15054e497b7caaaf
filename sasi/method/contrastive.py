"""SimCLR contrastive pre-training objective, NT-Xent (spec §2.7)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True, kw_only=True)
class ContrastiveConfig:
    """NT-Xent temperature and projection size (paper: τ = 0.1, 128)."""

    temperature: float = 0.1
    projection_dim: int = 128


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """Normalised-temperature cross entropy over ``2B`` anchors.

    ``z1[i]`` and ``z2[i]`` (each ``(B, E)``) are positives; every other of the ``2B − 2``
    embeddings in the batch is a negative. Cosine similarities are divided by ``temperature``;
    the loss is averaged over all ``2B`` anchors. Computed in float32, also under autocast.
    """
    z = torch.cat([z1, z2]).float()
    n = z1.shape[0]
    with torch.autocast(z.device.type, enabled=False):
        z = F.normalize(z, dim=1)
        sim = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
        positives = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(n, device=z.device)])
        return F.cross_entropy(sim, positives)


def retrieval_accuracy(z1: Tensor, z2: Tensor) -> Tensor:
    """Top-1 positive-pair retrieval: the share of the ``2B`` embeddings whose nearest other embedding
    (cosine) is their partner view. Chance level is ``1 / (2B − 1)``."""
    z = F.normalize(torch.cat([z1, z2]).detach().float(), dim=1)
    n = z1.shape[0]
    sim = (z @ z.T).fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(n, device=z.device)])
    return (sim.argmax(1) == partner).float().mean()


def contrastive_loss(model: nn.Module, head: nn.Module, view1: Tensor, view2: Tensor, temperature: float = 0.1) -> Tensor:
    """NT-Xent of ``head(model.encode(view))`` for two ``(B, 1, D, H, W)`` views in one pass."""
    z = head(model.encode(torch.cat([view1, view2])))
    return nt_xent(*z.chunk(2), temperature=temperature)
