"""Segmentation → particles: tiled inference (:mod:`.segment`), connected components (:mod:`.components`) and
one pick per particle (:mod:`.picks`), as configured by :class:`DetectConfig`."""

from __future__ import annotations

import numpy as np
import torch

from sasi.detect.components import foreground_components, propagate_components
from sasi.detect.config import CLASS_SOURCES, MODES, DetectConfig
from sasi.detect.picks import Detections, ParticleGeometry, maps_to_particles
from sasi.detect.segment import SegmentationMaps, normalise, normalise_on, receptive_context, segment, tile_starts
from sasi.detect.shape import ShapeClassifier, reclassify

__all__ = ["CLASS_SOURCES", "MODES", "DetectConfig", "Detections", "ParticleGeometry", "SegmentationMaps",
           "ShapeClassifier", "detect", "reclassify",
           "foreground_components", "maps_to_particles", "normalise", "normalise_on", "propagate_components",
           "receptive_context", "segment", "tile_starts"]


def detect(model: torch.nn.Module, volume: np.ndarray, geometry: ParticleGeometry, tomogram: str, *,
           config: DetectConfig = DetectConfig(), min_score: float = 0.0, device: torch.device | str = "cpu",
           amp: bool = False, shape: ShapeClassifier | None = None) -> Detections:
    """Find particles in a raw tomogram: normalise → :func:`segment` → :func:`maps_to_particles`; with ``shape``,
    each pick's class is the one its shape says (:func:`sasi.detect.shape.reclassify`)."""
    normalised = normalise_on(volume, device)
    maps = segment(model, normalised, tile=config.tile, margin=config.margin, device=device, amp=amp)
    found = maps_to_particles(maps, geometry, tomogram, config, min_score)
    if shape is not None:
        found.particles = reclassify(found.particles, normalised, shape, geometry.classes, geometry.voxel_size)
    return found
