"""Few-shot labels: K labelled particles per class and the sparse label volume used for training.

Label volume values: ``c >= 1`` inside the sphere of a chosen particle of class ``c`` (1-based in
``classes``), ``0`` background, ``IGNORE = -1`` unknown (ignored by the loss). Background follows
``background``:

- ``"rest"`` (the SaSi paper): every voxel outside the chosen spheres is background, so unlabelled
  particles are (wrongly) background: the positive-unlabelled effect the paper lives with.
- ``"certain"``: only voxels farther than ``margin`` voxels from every true particle are background,
  the rest is unknown; needs the instance map (the annotator marked empty regions, not particles).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy import ndimage

from sasi.errors import SasiError
from sasi.io.particles import particles_to_voxels
from sasi.method import IGNORE


def sample_fewshot(truth: pa.Table, shots: int | dict[str, int], classes: list[str], seed: int) -> pa.Table:
    """Choose ``shots`` particles per class uniformly at random (deterministic for ``seed``).

    ``shots`` may be a dict per class; 0 leaves that class unlabelled (a warning says so). Asking for
    more particles than a class has is an error.
    """
    per_class = shots if isinstance(shots, dict) else dict.fromkeys(classes, shots)
    rng = np.random.default_rng(seed)
    labels = np.asarray(truth.column("label").to_pylist(), dtype=object)
    chosen: list[int] = []
    for cls in classes:
        k = int(per_class.get(cls, 0))
        rows = np.flatnonzero(labels == cls)
        if k < 0:
            raise SasiError(f"shot count for class {cls!r} must be >= 0, got {k}")
        if k == 0:
            warnings.warn(f"class {cls!r} has 0 labelled particles: it stays unlabelled", stacklevel=2)
            continue
        if len(rows) < k:
            raise SasiError(f"class {cls!r} has only {len(rows)} particle(s), cannot label {k}")
        chosen.extend(rng.choice(rows, size=k, replace=False).tolist())
    if not chosen:
        raise SasiError("empty label set: every class has 0 labelled particles")
    return truth.take(pa.array(sorted(chosen), pa.int64()))


def labelled_particles(dataset, data) -> tuple[str, Any, pa.Table]:
    """The training tomogram (name, :class:`~sasi.io.mrc.Tomogram`) and its few-shot labelled particles for
    ``data`` (a ``DataConfig``): the first ``train`` tomogram unless ``data.train_tomogram`` names one,
    ``data.shots`` per class drawn with ``data.fewshot_seed``."""
    name = data.train_tomogram or dataset.names("train")[0]
    tomogram = dataset.tomogram(name)
    truth = dataset.particles(name, shape_zyx=tomogram.shape)
    return name, tomogram, sample_fewshot(truth, data.shots, dataset.classes, seed=data.fewshot_seed)


def label_volume(shape: tuple[int, int, int], chosen: pa.Table, classes: list[str], radii_vox: dict[str, float],
                 voxel_size: float, *, background: Literal["rest", "certain"] = "rest",
                 instances: np.ndarray | None = None, margin: float = 2.0) -> np.ndarray:
    """Rasterise chosen particles as class spheres (radius per class, voxels) over a background rule."""
    if background == "rest":
        out = np.zeros(shape, np.int8)
    elif background == "certain":
        if instances is None:
            raise SasiError("background='certain' needs the instance map of the training tomogram")
        near = ndimage.binary_dilation(instances > 0, iterations=max(1, int(round(margin))))
        out = np.where(near, IGNORE, 0).astype(np.int8)
    else:
        raise SasiError(f"unknown background rule {background!r} (rest|certain)")
    index = {c: i + 1 for i, c in enumerate(classes)}
    for (z, y, x), label in zip(particles_to_voxels(chosen, voxel_size), chosen.column("label").to_pylist()):
        r = radii_vox[label]
        lo = np.maximum(np.floor([z - r, y - r, x - r]).astype(int), 0)
        hi = np.minimum(np.ceil([z + r, y + r, x + r]).astype(int) + 1, shape)
        zz, yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        sphere = (zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= r * r
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][sphere] = index[label]
    return out


def class_counts(table: pa.Table) -> dict[str, int]:
    counts = pc.value_counts(table.column("label")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}
