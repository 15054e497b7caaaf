"""Segmentation → particles: tiled fully convolutional inference, argmax, 3D connected components, centroids."""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
import pyarrow as pa
import torch
from scipy import ndimage

from sasi.io.particles import empty_particles, make_particles, voxels_to_angstrom


def normalise(volume: np.ndarray) -> np.ndarray:
    """Per-tomogram z-score (DeepFinder / DeepETPicker standardisation)."""
    volume = np.asarray(volume, dtype=np.float32)
    return (volume - volume.mean()) / max(float(volume.std()), 1e-6)


def _starts(size: int, tile: int, step: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


@torch.no_grad()
def segment(model: torch.nn.Module, volume: np.ndarray | torch.Tensor, *, tile: int = 64, margin: int = 8,
            device: torch.device | str = "cpu", amp: bool = False) -> torch.Tensor:
    """Class probabilities ``(C, D, H, W)`` for a normalised volume, tile by tile.

    Each tile (edge ``tile``, a multiple of 4) keeps only its interior (``margin`` voxels dropped on
    inner edges), so the stitched result equals one whole-volume pass away from the tile seams.
    """
    device = torch.device(device)
    vol = torch.as_tensor(volume, dtype=torch.float32, device=device)
    shape = vol.shape
    pad = [(-s) % 4 if s < tile else 0 for s in shape]  # tiles smaller than the volume must still pool
    if any(pad):
        vol = torch.nn.functional.pad(vol[None, None], (0, pad[2], 0, pad[1], 0, pad[0]), mode="reflect")[0, 0]
    full = vol.shape
    tiles = [min(tile, s) for s in full]
    steps = [max(t - 2 * margin, 1) for t in tiles]
    out = None
    was_training = model.training
    model.eval()
    for z in _starts(full[0], tiles[0], steps[0]):
        for y in _starts(full[1], tiles[1], steps[1]):
            for x in _starts(full[2], tiles[2], steps[2]):
                block = vol[z:z + tiles[0], y:y + tiles[1], x:x + tiles[2]][None, None]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                    probs = torch.softmax(model(block).float(), dim=1)[0]
                if out is None:
                    out = torch.zeros((probs.shape[0], *full), device=device)
                src, dst = [], []
                for start, t, s in zip((z, y, x), tiles, full):
                    lo = 0 if start == 0 else margin
                    hi = t if start + t >= s else t - margin
                    src.append(slice(lo, hi))
                    dst.append(slice(start + lo, start + hi))
                out[(slice(None), *dst)] = probs[(slice(None), *src)]
    model.train(was_training)
    return out[:, : shape[0], : shape[1], : shape[2]]


@dataclass
class Detections:
    particles: pa.Table
    segmentation: np.ndarray  # argmax class map (z, y, x)


def components_to_particles(probs: torch.Tensor, classes: list[str], voxel_size: float, tomogram: str, *,
                            connectivity: int = 26, min_size: int = 0) -> Detections:
    """Argmax → connected components (per class) → one particle per component at its centroid.

    The score of a particle is the mean winning-class probability over its component.
    """
    confidence, argmax = probs.max(dim=0)
    seg = argmax.to(torch.uint8).cpu().numpy()
    comps = cc3d.connected_components(seg, connectivity=connectivity)
    n = int(comps.max())
    if n == 0:
        return Detections(empty_particles(), seg)
    index = np.arange(1, n + 1)
    sizes = ndimage.sum_labels(np.ones_like(seg), comps, index)
    keep = sizes >= max(min_size, 1)
    index = index[keep]
    if len(index) == 0:
        return Detections(empty_particles(), seg)
    centroids = np.asarray(ndimage.center_of_mass(np.ones_like(seg), comps, index)).reshape(-1, 3)
    first = ndimage.labeled_comprehension(seg, comps, index, lambda v: v[0], np.int64, 0)
    scores = ndimage.mean(confidence.float().cpu().numpy(), comps, index)
    labels = [classes[c - 1] for c in first]
    xyz = voxels_to_angstrom(centroids, voxel_size)
    return Detections(make_particles(tomogram, labels, xyz, score=scores), seg)


def detect(model: torch.nn.Module, volume: np.ndarray, classes: list[str], voxel_size: float, tomogram: str, *,
           tile: int = 64, margin: int = 8, connectivity: int = 26, min_size: int = 0,
           device: torch.device | str = "cpu", amp: bool = False) -> Detections:
    """Find particles in a raw tomogram: normalise → :func:`segment` → :func:`components_to_particles`."""
    probs = segment(model, normalise(volume), tile=tile, margin=margin, device=device, amp=amp)
    return components_to_particles(probs, classes, voxel_size, tomogram, connectivity=connectivity,
                                   min_size=min_size)
