"""Few-shot class of a particle from its shape alone: rotation-invariant descriptors of the sub-volume around each
labelled particle and a linear discriminant (class means, one shrunk covariance) fitted on those few.

The descriptor of a centre is the radial density profile (mean of the z-scored tomogram in 1-voxel shells out to
``radius``) and the log radially averaged power spectrum of the same cube under a Gaussian window: both are
invariant to the particle's orientation (up to the missing wedge, the same for every particle) and the spectrum
also to small centring errors. SHREC-like classes differ mostly in size and mass, which both capture.
``benchmarks/shape_classes.py`` measures how well it classifies true particles from N labelled ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sasi.errors import SasiError
from sasi.io.particles import particles_to_voxels


def _shells(radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real-space shell index, Fourier shell index and Gaussian window of a cube of edge ``2·radius + 1``."""
    axis = np.arange(-radius, radius + 1)
    r = np.sqrt(sum(a**2 for a in np.meshgrid(axis, axis, axis, indexing="ij")))
    f = np.sqrt(sum(a**2 for a in np.meshgrid(*[np.fft.fftfreq(len(axis))] * 3, indexing="ij"))) * len(axis)
    window = np.exp(-(r**2) / (2 * (radius / 2) ** 2))
    return np.minimum(np.round(r).astype(int), radius + 1).ravel(), np.minimum(np.round(f).astype(int), radius + 1).ravel(), window


def shape_descriptors(volume: np.ndarray, centres_zyx: np.ndarray, radius: int = 16) -> np.ndarray:
    """``(n, 2·radius + 1)`` descriptors (radial profile, then log power spectrum) of the cubes around
    ``centres_zyx`` (voxels, rounded) in ``volume`` (z-scored; reflected at its edges)."""
    centres = np.round(np.asarray(centres_zyx, dtype=float).reshape(-1, 3)).astype(int)
    if len(centres) and (centres.min() < 0 or (centres >= volume.shape).any()):
        raise SasiError(f"shape descriptors: a centre lies outside the volume of shape {volume.shape}")
    shell, fshell, window = _shells(radius)
    counts = np.bincount(shell, minlength=radius + 2)[:radius + 1]
    fcounts = np.bincount(fshell, minlength=radius + 2)[1:radius + 1]
    padded = np.pad(np.asarray(volume, dtype=np.float32), radius, mode="reflect")
    out = np.empty((len(centres), 2 * radius + 1))
    for i, (z, y, x) in enumerate(centres + radius):
        cube = padded[z - radius:z + radius + 1, y - radius:y + radius + 1, x - radius:x + radius + 1]
        profile = np.bincount(shell, cube.ravel(), minlength=radius + 2)[:radius + 1] / counts
        power = np.abs(np.fft.fftn(cube * window)) ** 2
        spectrum = np.bincount(fshell, power.ravel(), minlength=radius + 2)[1:radius + 1] / fcounts
        out[i] = np.concatenate([profile, np.log(spectrum + 1e-12)])
    return out


@dataclass(frozen=True)
class ShapeClassifier:
    """Linear discriminant on :func:`shape_descriptors`: class means and one covariance shrunk halfway towards
    its diagonal (a few examples per class cannot estimate a full one)."""

    means: np.ndarray  # (classes, features)
    precision: np.ndarray  # (features, features), inverse of the shrunk pooled covariance

    @classmethod
    def fit(cls, descriptors: np.ndarray, classes: np.ndarray, n_classes: int, shrinkage: float = 0.5) -> ShapeClassifier:
        """``classes``: 0-based class of each row of ``descriptors``; every class needs at least one example."""
        missing = sorted(set(range(n_classes)) - set(np.asarray(classes).tolist()))
        if missing:
            raise SasiError(f"shape classifier: no labelled example of class index(es) {missing}")
        means = np.stack([descriptors[classes == c].mean(0) for c in range(n_classes)])
        residual = descriptors - means[classes]
        cov = residual.T @ residual / max(1, len(descriptors) - n_classes)
        shrunk = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov)) + 1e-6 * np.eye(len(cov))
        return cls(means, np.linalg.inv(shrunk))

    def distances(self, descriptors: np.ndarray) -> np.ndarray:
        """``(n, classes)`` squared Mahalanobis distance of each descriptor to each class mean."""
        diff = descriptors[:, None, :] - self.means[None]
        return np.einsum("nck,kl,ncl->nc", diff, self.precision, diff)

    def predict(self, descriptors: np.ndarray) -> np.ndarray:
        """0-based class of each descriptor (the nearest mean)."""
        return self.distances(descriptors).argmin(1)


def fit_on_particles(volume: np.ndarray, particles: pa.Table, classes: list[str], voxel_size: float) -> ShapeClassifier:
    """A :class:`ShapeClassifier` from the labelled ``particles`` of ``volume`` (z-scored), e.g. the few-shot set."""
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] for c in particles.column("label").to_pylist()])
    return ShapeClassifier.fit(shape_descriptors(volume, particles_to_voxels(particles, voxel_size)), labels,
                               len(classes))


def reclassify(picks: pa.Table, volume: np.ndarray, model: ShapeClassifier, classes: list[str],
               voxel_size: float) -> pa.Table:
    """``picks`` of ``volume`` (z-scored) with each ``label`` replaced by the class its shape says."""
    if picks.num_rows == 0:
        return picks
    zyx = np.clip(particles_to_voxels(picks, voxel_size), 0, np.array(volume.shape) - 1)
    names = pa.array([classes[i] for i in model.predict(shape_descriptors(volume, zyx))], picks.schema.field("label").type)
    return picks.set_column(picks.schema.get_field_index("label"), "label", names)
