"""Backbone + projection head as one module, so DDP sees every trainable path through ``forward``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sasi.model import ProjectionHead, build_model


class SasiNet(nn.Module):
    """``forward(x)`` → segmentation logits; ``forward(x, project=True)`` → ``(logits, projection)``;
    ``forward(x, project=True, segment=False)`` → the projection alone (the decoder is not run)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    @classmethod
    def build(cls, name: str, n_classes: int, patch: int, projection_dim: int,
              channels: tuple[int, int, int] = (32, 48, 64)) -> SasiNet:
        backbone = build_model(name, n_classes=n_classes, channels=tuple(channels))
        with torch.no_grad():
            e_dim = backbone.encode(torch.zeros(1, 1, patch, patch, patch)).flatten(1).shape[1]
        return cls(backbone, ProjectionHead(e_dim, projection_dim))

    def forward(self, x: Tensor, project: bool = False, segment: bool = True) -> Tensor | tuple[Tensor, Tensor]:
        if not project:
            return self.backbone(x)
        if not segment:
            return self.head(self.backbone.encode(x))
        logits, features = self.backbone.forward_with_bottleneck(x)
        return logits, self.head(features)
