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
import torch

from sasi.errors import SasiError
from sasi.io.particles import particles_to_voxels


def _shells(radius: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shell averaging matrices (real space, Fourier space: voxels × shells, rows summing a shell's voxels into its
    mean) and the Gaussian window of a cube of edge ``2·radius + 1``, in float64 on ``device``."""
    axis = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    freq = torch.fft.fftfreq(len(axis), dtype=torch.float64, device=device) * len(axis)
    r = torch.sqrt(sum(a**2 for a in torch.meshgrid(axis, axis, axis, indexing="ij"))).ravel()
    f = torch.sqrt(sum(a**2 for a in torch.meshgrid(freq, freq, freq, indexing="ij"))).ravel()
    window = torch.exp(-(r**2) / (2 * (radius / 2) ** 2)).reshape((len(axis),) * 3)

    def averaging(distance: torch.Tensor, first: int) -> torch.Tensor:
        shell = torch.round(distance).long()
        onehot = (shell[:, None] == torch.arange(first, radius + 1, device=device)[None]).double()
        return onehot / onehot.sum(0)

    return averaging(r, 0), averaging(f, 1), window


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Indices past either edge mirrored back inside (edge voxel not repeated, like ``np.pad(mode="reflect")``)."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def shape_descriptors(volume: np.ndarray | torch.Tensor, centres_zyx: np.ndarray, radius: int = 16,
                      batch: int = 256) -> np.ndarray:
    """``(n, 2·radius + 1)`` descriptors (radial profile, then log power spectrum) of the cubes around
    ``centres_zyx`` (voxels, rounded) in ``volume`` (z-scored; reflected at its edges), computed on the volume's
    device ``batch`` cubes at a time."""
    volume = torch.as_tensor(volume)
    centres = np.round(np.asarray(centres_zyx, dtype=float).reshape(-1, 3)).astype(np.int64)
    if len(centres) and (centres.min() < 0 or (centres >= volume.shape).any()):
        raise SasiError(f"shape descriptors: a centre lies outside the volume of shape {tuple(volume.shape)}")
    profile, spectrum, window = _shells(radius, volume.device)
    offsets = torch.arange(-radius, radius + 1, device=volume.device)
    out = []
    for chunk in torch.as_tensor(centres, device=volume.device).split(batch):
        z, y, x = (_reflect(chunk[:, a, None] + offsets, volume.shape[a]) for a in range(3))
        cubes = volume[z[:, :, None, None], y[:, None, :, None], x[:, None, None, :]].double()
        power = torch.fft.fftn(cubes * window, dim=(1, 2, 3)).abs() ** 2
        out.append(torch.cat([cubes.flatten(1) @ profile, torch.log(power.flatten(1) @ spectrum + 1e-12)], 1))
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, 2 * radius + 1))


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

    def state(self) -> dict[str, np.ndarray]:
        """What a checkpoint keeps (:meth:`from_state` restores it)."""
        return {"means": self.means, "precision": self.precision}

    @classmethod
    def from_state(cls, state: dict) -> ShapeClassifier:
        return cls(np.asarray(state["means"]), np.asarray(state["precision"]))

    def distances(self, descriptors: np.ndarray) -> np.ndarray:
        """``(n, classes)`` squared Mahalanobis distance of each descriptor to each class mean."""
        diff = descriptors[:, None, :] - self.means[None]
        return np.einsum("nck,kl,ncl->nc", diff, self.precision, diff)

    def predict(self, descriptors: np.ndarray) -> np.ndarray:
        """0-based class of each descriptor (the nearest mean)."""
        return self.distances(descriptors).argmin(1)


def fit_on_particles(volume: np.ndarray | torch.Tensor, particles: pa.Table, classes: list[str], voxel_size: float) -> ShapeClassifier:
    """A :class:`ShapeClassifier` from the labelled ``particles`` of ``volume`` (z-scored), e.g. the few-shot set."""
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] for c in particles.column("label").to_pylist()])
    return ShapeClassifier.fit(shape_descriptors(volume, particles_to_voxels(particles, voxel_size)), labels,
                               len(classes))


def reclassify(picks: pa.Table, volume: np.ndarray | torch.Tensor, model: ShapeClassifier, classes: list[str],
               voxel_size: float) -> pa.Table:
    """``picks`` of ``volume`` (z-scored) with each ``label`` replaced by the class its shape says."""
    if picks.num_rows == 0:
        return picks
    zyx = np.clip(particles_to_voxels(picks, voxel_size), 0, np.array(volume.shape) - 1)
    names = pa.array([classes[i] for i in model.predict(shape_descriptors(volume, zyx))], picks.schema.field("label").type)
    return picks.set_column(picks.schema.get_field_index("label"), "label", names)
