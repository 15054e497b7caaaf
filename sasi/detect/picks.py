"""Segmentation maps → one pick per particle: grouping, class vote, splitting, size window, merging."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from scipy.spatial import cKDTree

from sasi.detect.components import foreground_components
from sasi.detect.config import DetectConfig
from sasi.detect.segment import SegmentationMaps
from sasi.io.particles import make_particles, voxels_to_angstrom


@dataclass(frozen=True)
class ParticleGeometry:
    """Class names and sizes detection needs: particle radii (Å) and the training label-sphere scale."""

    classes: list[str]
    voxel_size: float
    radii: dict[str, float]  # Å, equivalent-sphere radius per class
    label_radius_scale: float = 0.5

    def radius_vox(self) -> np.ndarray:
        """Particle radius (voxels) per class, 1-based: index 0 (background) is 0."""
        return np.array([0.0] + [self.radii[c] / self.voxel_size for c in self.classes])

    def label_volume(self) -> np.ndarray:
        """Voxels in each class's training label sphere, 1-based like :meth:`radius_vox`."""
        return 4 / 3 * math.pi * (self.label_radius_scale * self.radius_vox()) ** 3


@dataclass
class Detections:
    particles: pa.Table  # sorted by score, best first
    segmentation: torch.Tensor  # per-voxel argmax class (z, y, x), uint8, on the inference device


@dataclass
class _Candidates:
    """Per-component sums of one partition of the foreground voxels."""

    count: torch.Tensor  # (K,)
    centroid: torch.Tensor  # (K, 3) z, y, x voxels
    score: torch.Tensor  # (K,)
    label: torch.Tensor  # (K,) 1-based class

    def keep(self, mask: torch.Tensor) -> _Candidates:
        return _Candidates(self.count[mask], self.centroid[mask], self.score[mask], self.label[mask])


def maps_to_particles(maps: SegmentationMaps, geometry: ParticleGeometry, tomogram: str,
                      config: DetectConfig = DetectConfig(), min_score: float = 0.0) -> Detections:
    """Picks of one tomogram as configured (``config.mode``), scores ≥ ``min_score``, best first."""
    if config.mode == "cc3d-per-class":
        found = _per_class(maps, config)
    else:
        found = _foreground(maps, geometry, config)
    found = found.keep(found.score >= min_score)
    if found.count.numel() == 0:
        return Detections(make_particles(tomogram, [], np.zeros((0, 3)), score=[]), maps.labels)
    order = torch.argsort(found.score, descending=True, stable=True)
    centroid, score, label = (t[order].cpu().numpy() for t in (found.centroid, found.score, found.label))
    names = [geometry.classes[c - 1] for c in label]
    xyz = voxels_to_angstrom(centroid, geometry.voxel_size)
    return Detections(make_particles(tomogram, names, xyz, score=score), maps.labels)


def _per_class(maps: SegmentationMaps, config: DetectConfig) -> _Candidates:
    """The paper's rule: components of each argmax class, unweighted centroid, mean winning probability."""
    coords, component = foreground_components(maps.labels, config.connectivity)
    weight = maps.best_prob[coords.unbind(1)].double()
    found = _sums(coords, component, torch.ones_like(weight), weight, maps.labels[coords.unbind(1)].long(), None)
    return found.keep(found.count >= max(config.min_size, 1))


def _foreground(maps: SegmentationMaps, geometry: ParticleGeometry, config: DetectConfig) -> _Candidates:
    mask = (maps.foreground.float() > config.threshold).to(torch.uint8)
    coords, component = foreground_components(mask, config.connectivity)
    at = coords.unbind(1)
    fg, vote_class, vote = maps.foreground[at].double(), maps.best_class[at].long(), maps.best_prob[at].double()
    n_classes = len(geometry.classes) + 1
    found = _sums(coords, component, fg, vote, vote_class, n_classes)
    sphere = torch.as_tensor(geometry.label_volume(), device=coords.device)
    oversized = (found.count > config.split_factor * sphere[found.label]).nonzero()[:, 0]
    if oversized.numel():
        component = _split(maps, geometry, coords, component, oversized, config)
        found = _sums(coords, component, fg, vote, vote_class, n_classes)
    found = found.keep(found.count >= torch.clamp(config.min_size_fraction * sphere[found.label], min=1.0))
    return _merge(found, geometry.radius_vox(), config.merge_factor)


def _sums(coords: torch.Tensor, component: torch.Tensor, weight: torch.Tensor, vote: torch.Tensor,
          vote_class: torch.Tensor, n_classes: int | None) -> _Candidates:
    """Count, ``weight``-weighted centroid, mean ``weight`` and voted class of every component.

    With ``n_classes`` the class is the argmax of ``vote`` summed per (component, ``vote_class``); without, a
    component's voxels share one class (``vote_class``) and the score is the mean ``vote``.
    """
    if component.numel() == 0:
        empty = torch.zeros(0, device=coords.device)
        return _Candidates(empty, empty.reshape(0, 3), empty, empty.long())
    k = int(component.max()) + 1
    count = torch.bincount(component, minlength=k).double()
    mass = torch.bincount(component, weight, minlength=k)
    centroid = torch.zeros(k, 3, dtype=torch.float64, device=coords.device)
    centroid.index_add_(0, component, coords.double() * weight[:, None])
    centroid /= mass.clamp_min(1e-12)[:, None]
    if n_classes is None:
        label = torch.zeros(k, dtype=torch.long, device=coords.device)
        label[component] = vote_class
        return _Candidates(count, centroid, torch.bincount(component, vote, minlength=k) / count, label)
    votes = torch.bincount(component * n_classes + vote_class, vote, minlength=k * n_classes).reshape(k, n_classes)
    return _Candidates(count, centroid, mass / count, votes.argmax(1))


def _split(maps: SegmentationMaps, geometry: ParticleGeometry, coords: torch.Tensor, component: torch.Tensor,
           oversized: torch.Tensor, config: DetectConfig) -> torch.Tensor:
    """Split the ``oversized`` components: voxels go to the nearest seed, seeds being the peaks of the smoothed
    particle probability at least one label radius apart (strongest first). A component with one seed stays
    whole; parts get new component ids after the existing ones. Memory grows with the voxels, not voxels × seeds.
    """
    radius = max(1, int(round(geometry.label_radius_scale * float(geometry.radius_vox()[1:].min()))))
    smooth = _gaussian(maps.foreground.float() * (maps.foreground.float() > config.threshold), radius / 2)
    peak = smooth == torch.nn.functional.max_pool3d(smooth[None, None], 2 * radius + 1, 1, radius)[0, 0]
    at = coords.unbind(1)
    is_peak = (peak[at] & (smooth[at] > config.threshold)).cpu().numpy()
    height, xyz, ids = smooth[at].cpu().numpy(), coords.cpu().numpy(), component.cpu().numpy().copy()
    is_peak[is_peak] = _first_per_cell(xyz[is_peak], height[is_peak], ids[is_peak], radius + 1)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    next_id = int(ids.max()) + 1
    for k in oversized.tolist():
        members = order[np.searchsorted(sorted_ids, k):np.searchsorted(sorted_ids, k, side="right")]
        candidates = members[is_peak[members]]
        candidates = candidates[np.argsort(-height[candidates], kind="stable")]
        seeds = candidates[_greedy_keep(xyz[candidates], np.full(len(candidates), float(radius)))]
        if len(seeds) < 2:
            continue
        nearest = cKDTree(xyz[seeds]).query(xyz[members])[1]
        ids[members] = np.where(nearest == 0, k, next_id + nearest - 1)
        next_id += len(seeds) - 1
    return torch.from_numpy(np.unique(ids, return_inverse=True)[1].reshape(-1)).to(component.device)


def _first_per_cell(xyz: np.ndarray, height: np.ndarray, ids: np.ndarray, cell: int) -> np.ndarray:
    """Which peaks to keep as seed candidates: the first of each (component, height, cube of edge ``cell``).

    Peaks that are strict maxima of their window are never two to a cube, so this only thins ties: on a flat
    top (saturated float16 probabilities) every voxel is a peak, and greedy suppression over all of them costs
    hours on a 512³ tomogram.
    """
    key = np.column_stack([ids, height.astype(np.float32).view(np.int32), xyz // cell])
    keep = np.zeros(len(xyz), bool)
    keep[np.unique(key, axis=0, return_index=True)[1]] = True
    return keep


def _gaussian(volume: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a 3-D volume (zero padding)."""
    half = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-half, half + 1, dtype=volume.dtype, device=volume.device)
    kernel = torch.exp(-x**2 / (2 * sigma**2))
    kernel /= kernel.sum()
    out = volume[None, None]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = len(x)
        padding = [0, 0, 0]
        padding[axis] = half
        out = torch.nn.functional.conv3d(out, kernel.reshape(shape), padding=tuple(padding))
    return out[0, 0]


def _merge(found: _Candidates, radius_vox: np.ndarray, factor: float) -> _Candidates:
    """Greedy non-maximum suppression: best score first, drop picks within ``factor`` × max(r_a, r_b)."""
    if found.count.numel() < 2 or factor <= 0:
        return found
    order = torch.argsort(found.score, descending=True, stable=True).cpu().numpy()
    alive = _greedy_keep(found.centroid.cpu().numpy()[order], factor * radius_vox[found.label.cpu().numpy()[order]])
    keep = torch.zeros(len(order), dtype=torch.bool)
    keep[torch.from_numpy(order[alive])] = True
    return found.keep(keep.to(found.count.device))


def _greedy_keep(centres: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Which of ``centres`` (best first) survive greedy suppression: each kept one removes every later one
    closer than the larger of their two ``reach`` values."""
    n = len(centres)
    alive = np.ones(n, bool)
    if n < 2:
        return alive
    pairs = cKDTree(centres).query_pairs(float(reach.max()), output_type="ndarray")
    if len(pairs):
        distance = np.linalg.norm(centres[pairs[:, 0]] - centres[pairs[:, 1]], axis=1)
        pairs = pairs[distance < np.maximum(reach[pairs[:, 0]], reach[pairs[:, 1]])]
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for i, j in pairs:  # i < j: j ranks lower
        neighbours[i].append(j)
    for i in range(n):
        if alive[i]:
            alive[neighbours[i]] = False
    return alive
