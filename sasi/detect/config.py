"""How segmentations become picks: the detection settings (``detect:`` in a run config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sasi.errors import SasiError

MODES = ("foreground", "cc3d-per-class")
CLASS_SOURCES = ("network", "shape", "auto")


@dataclass(frozen=True, kw_only=True)
class DetectConfig:
    """Segmentation → particles.

    ``mode: foreground`` (default) gives one pick per particle: connected components of the voxels whose
    particle probability exceeds ``threshold``, whatever their class; each component's class is the one with
    the largest summed probability over its voxels; components much larger than their class's label sphere
    are split at the peaks of the smoothed particle probability; components smaller than
    ``min_size_fraction`` of the label sphere are dropped; picks closer than ``merge_factor`` × the larger of
    their two particle radii are one particle (the higher score wins). Sizes come from the training labels
    (class radius × ``data.label_radius_scale``), so no threshold is in voxels.
    ``mode: cc3d-per-class`` is the SaSi paper's post-processing: components of each argmax class, one pick per
    component, ``min_size`` in voxels.
    ``class_source`` says where a pick's class comes from: ``network`` (its vote, as above), ``shape`` (a linear
    discriminant on rotation-invariant shape descriptors fitted on the labelled particles, :mod:`sasi.detect.shape`)
    or ``auto`` (whichever of the two gives the higher class-aware F1 on the validation tomogram, chosen in
    training like ``min_score`` and kept in the checkpoint).
    """

    mode: Literal["foreground", "cc3d-per-class"] = "foreground"
    tile: int = 256  # largest fully convolutional tile edge (tiles are balanced, multiples of 4)
    margin: int | None = None  # voxels dropped at inner tile edges (None: the network's context, exact)
    connectivity: int = 26
    threshold: float = 0.5  # foreground: a voxel is particle when 1 − P(background) exceeds this
    min_size_fraction: float = 0.2  # foreground: smallest component, as a fraction of its label-sphere volume
    split_factor: float = 1.5  # foreground: components larger than this × the label sphere are split at peaks
    merge_factor: float = 1.0  # foreground: picks closer than this × max(r_a, r_b) are one particle
    min_score: float | None = None  # drop picks scoring below; None: chosen on the validation tomogram
    min_size: int = 0  # cc3d-per-class: smallest component (voxels) kept as a particle
    class_source: Literal["network", "shape", "auto"] = "auto"  # auto: chosen on the validation tomogram

    def __post_init__(self) -> None:
        checks = [
            (self.mode in MODES, f"mode must be one of {MODES}, got {self.mode!r}"),
            (self.class_source in CLASS_SOURCES, f"class_source must be one of {CLASS_SOURCES}, got {self.class_source!r}"),
            (0.0 < self.threshold < 1.0, f"threshold must be in (0, 1), got {self.threshold}"),
            (self.min_size_fraction >= 0.0, f"min_size_fraction must be >= 0, got {self.min_size_fraction}"),
            (self.split_factor > 1.0, f"split_factor must be > 1, got {self.split_factor}"),
            (self.merge_factor >= 0.0, f"merge_factor must be >= 0, got {self.merge_factor}"),
            (self.connectivity in (6, 18, 26), f"connectivity must be 6, 18 or 26, got {self.connectivity}"),
            (self.tile >= 8 and self.tile % 4 == 0, f"tile must be a multiple of 4 and >= 8, got {self.tile}"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise SasiError(f"detect: {bad[0]}")
