"""A name → constructor registry for segmentation backbones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from torch import Tensor, nn

from sasi.errors import SasiError

MODELS: dict[str, Callable[..., nn.Module]] = {}

_F = TypeVar("_F", bound=Callable[..., nn.Module])


@runtime_checkable
class SegmentationModel(Protocol):
    """What every registered backbone provides.

    ``forward(x)`` maps ``(B, 1, D, H, W)`` images to ``(B, n_classes, D, H, W)`` logits and
    ``encode(x)`` returns the bottleneck features used by contrastive pre-training.
    """

    def forward(self, x: Tensor) -> Tensor: ...

    def encode(self, x: Tensor) -> Tensor: ...

    def forward_with_bottleneck(self, x: Tensor) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Which backbone to build (``n_classes`` comes from the data)."""

    name: str = "deepfinder"
    channels: tuple[int, int, int] = (32, 48, 64)  # encoder widths and bottleneck (DeepFinder)


def register_model(name: str) -> Callable[[_F], _F]:
    """Class/function decorator adding a constructor to :data:`MODELS` under ``name``."""

    def decorate(factory: _F) -> _F:
        if name in MODELS:
            raise SasiError(f"model {name!r} is already registered")
        MODELS[name] = factory
        return factory

    return decorate


def build_model(name: str, n_classes: int, **kwargs: object) -> nn.Module:
    """Instantiate the registered model ``name`` with ``n_classes`` outputs."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise SasiError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS)) or 'none'}") from None
    return factory(n_classes=n_classes, **kwargs)
