"""Segmentation backbones, their registry and the contrastive projection head."""

from sasi.model.heads import ProjectionHead
from sasi.model.registry import (
    MODELS,
    ModelConfig,
    SegmentationModel,
    build_model,
    register_model,
)
from sasi.model.unet import DeepFinderUNet

__all__ = [
    "MODELS", "DeepFinderUNet", "ModelConfig", "ProjectionHead", "SegmentationModel",
    "build_model", "register_model",
]
