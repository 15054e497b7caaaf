"""The SimCLR projection head of SaSi's self-supervised pre-training (spec §2.7)."""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """Flatten → ReLU → Linear(e_dim → out_features), as in the paper (no hidden layer).

    Parameters
    ----------
    in_features
        Flattened bottleneck size ``e_dim`` (e.g. ``DeepFinderUNet.embedding_dim(24)`` = 13,824).
        ``None`` infers it at the first call (``nn.LazyLinear``); run one forward pass before
        building the optimiser or loading a state dict in that case.
    out_features
        Projection size (128 in the paper).
    """

    def __init__(self, in_features: int | None = None, out_features: int = 128):
        super().__init__()
        self.relu = nn.ReLU()
        self.linear = nn.LazyLinear(out_features) if in_features is None else nn.Linear(in_features, out_features)

    def forward(self, features: Tensor) -> Tensor:
        """Map ``(B, ...)`` encoder features to ``(B, out_features)``."""
        return self.linear(self.relu(features.flatten(1)))
