"""Segmentation → particles: tiled fully convolutional inference, argmax, 3D connected components, centroids."""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from dataclasses import dataclass

import cc3d
import numpy as np
import pyarrow as pa
import torch

from sasi.errors import SasiError
from sasi.io.particles import empty_particles, make_particles, voxels_to_angstrom


def normalise(volume: np.ndarray) -> np.ndarray:
    """Per-tomogram z-score (DeepFinder / DeepETPicker standardisation)."""
    volume = np.asarray(volume, dtype=np.float32)
    return (volume - volume.mean()) / max(float(volume.std()), 1e-6)


def receptive_context(model: torch.nn.Module) -> int:
    """Input voxels on either side that one output voxel depends on (``model.context``; 36 if it has none)."""
    return int(getattr(model, "context", 36))


def tile_starts(size: int, tile: int, margin: int) -> tuple[int, list[int]]:
    """(edge, starts) of balanced tiles covering ``size`` voxels (a multiple of 4), each at most ``tile``.

    Edges and starts are multiples of 4 so pooling sees the same grid as one whole-volume pass, and neighbouring
    tiles overlap by ``2·margin`` (the interiors they keep abut). As few tiles as fit, all of one edge.
    """
    if size <= tile:
        return size, [0]
    if tile - 2 * margin < 4:
        raise SasiError(f"detect tile {tile} leaves no interior with margin {margin} (need tile >= 2·margin + 4)")
    n = math.ceil((size - 2 * margin) / (tile - 2 * margin))
    step = -(-math.ceil((size - 2 * margin) / n) // 4) * 4
    edge = min(step + 2 * margin, size)
    return edge, sorted({min(i * step, size - edge) for i in range(n)})


@contextmanager
def _cudnn_heuristics():
    """cuDNN picks conv algorithms by heuristics here: its autotuner (FIND) fails on large 3D tiles (H100)."""
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = benchmark


@torch.no_grad()
def segment(model: torch.nn.Module, volume: np.ndarray | torch.Tensor, *, tile: int = 256, margin: int | None = None,
            device: torch.device | str = "cpu", amp: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-voxel class and confidence ``(labels uint8, max probability float16)``, both ``(D, H, W)`` on ``device``.

    The volume (reflect-padded to a multiple of 4) is cut into balanced cubes of edge at most ``tile`` that
    overlap by ``2·margin``; each keeps its interior. With ``margin`` at least the network's receptive context
    (the default, :func:`receptive_context`) the result is that of one whole-volume pass. Only the argmax and
    its probability are stored, never the ``C``-channel map.
    """
    device = torch.device(device)
    margin = receptive_context(model) if margin is None else margin
    vol = torch.as_tensor(volume, dtype=torch.float32).to(device)
    shape = vol.shape
    pad = [(-s) % 4 for s in shape]  # every tile (and the pooling grid) must be a multiple of 4
    if any(pad):
        vol = torch.nn.functional.pad(vol[None, None], (0, pad[2], 0, pad[1], 0, pad[0]), mode="reflect")[0, 0]
    full = vol.shape
    grid = [tile_starts(s, tile, margin) for s in full]
    edges = [g[0] for g in grid]
    labels = torch.zeros(full, dtype=torch.uint8, device=device)
    confidence = torch.zeros(full, dtype=torch.float16, device=device)
    was_training = model.training
    model.eval()
    for corner in itertools.product(*(g[1] for g in grid)):
        block = vol[tuple(slice(c, c + e) for c, e in zip(corner, edges))][None, None]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"), \
                _cudnn_heuristics():
            logits = model(block)[0].float()
        conf, best = torch.softmax(logits, dim=0).max(dim=0)
        src, dst = [], []
        for start, e, s in zip(corner, edges, full):
            lo = 0 if start == 0 else margin
            hi = e if start + e >= s else e - margin
            src.append(slice(lo, hi))
            dst.append(slice(start + lo, start + hi))
        labels[tuple(dst)] = best[tuple(src)].to(torch.uint8)
        confidence[tuple(dst)] = conf[tuple(src)].half()
    model.train(was_training)
    crop = tuple(slice(0, s) for s in shape)
    return labels[crop], confidence[crop]


_HALF_NEIGHBOURS = {
    6: [(1, 0, 0), (0, 1, 0), (0, 0, 1)],
    26: [(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dz, dy, dx) > (0, 0, 0)],
}
_HALF_NEIGHBOURS[18] = [d for d in _HALF_NEIGHBOURS[26] if sum(map(abs, d)) <= 2]


def foreground_components(labels: torch.Tensor, connectivity: int = 26) -> tuple[torch.Tensor, torch.Tensor]:
    """Connected components of the non-zero voxels of a label volume, on its device.

    Two voxels join when they are neighbours (6-, 18- or 26-connectivity) with the same label. On CPU this
    is ``cc3d.connected_components``; on a GPU, :func:`propagate_components` (same partition).

    Returns ``(coordinates (M, 3) int64 z, y, x, component (M,) int64 in 0..K-1)``.
    """
    if connectivity not in _HALF_NEIGHBOURS:
        raise ValueError(f"connectivity must be 6, 18 or 26, got {connectivity}")
    if labels.device.type != "cpu":
        return propagate_components(labels, connectivity)
    coords = labels.nonzero()
    components = cc3d.connected_components(labels.numpy(), connectivity=connectivity)
    return coords, torch.from_numpy(components[tuple(coords.numpy().T)].astype(np.int64) - 1)


def propagate_components(labels: torch.Tensor, connectivity: int = 26) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`foreground_components` with tensor ops only (fast on a GPU).

    Works on the sparse foreground: an index volume finds each voxel's same-label neighbours (half of
    the neighbourhood, so each edge once), then min-label propagation with pointer jumping merges them.
    """
    coords = labels.nonzero()
    m = coords.shape[0]
    if m == 0:
        return coords, torch.zeros(0, dtype=torch.long, device=labels.device)
    index = torch.full(labels.shape, -1, dtype=torch.int64 if m >= 2**31 else torch.int32, device=labels.device)
    index[coords.unbind(1)] = torch.arange(m, device=labels.device, dtype=index.dtype)
    extent = torch.tensor(labels.shape, device=labels.device)
    own = labels[coords.unbind(1)]
    src, dst = [], []
    for offset in _HALF_NEIGHBOURS[connectivity]:
        other = coords + torch.tensor(offset, device=labels.device)
        inside = ((other >= 0) & (other < extent)).all(1)
        i = inside.nonzero()[:, 0]
        j = index[other[i].unbind(1)].long()
        keep = j >= 0
        i, j = i[keep], j[keep]
        keep = labels[coords[j].unbind(1)] == own[i]
        src.append(i[keep])
        dst.append(j[keep])
    src, dst = torch.cat(src), torch.cat(dst)
    parent = torch.arange(m, device=labels.device)
    while True:
        low = torch.minimum(parent[src], parent[dst])
        updated = parent.clone()
        updated.scatter_reduce_(0, parent[src], low, "amin")  # hook each root onto the smallest neighbour root
        updated.scatter_reduce_(0, parent[dst], low, "amin")
        while True:  # pointer jumping: every voxel points at its root
            jumped = updated[updated]
            if torch.equal(jumped, updated):
                break
            updated = jumped
        if torch.equal(updated, parent):
            break
        parent = updated
    return coords, torch.unique(parent, return_inverse=True)[1]


@dataclass
class Detections:
    particles: pa.Table
    segmentation: torch.Tensor  # per-voxel class (z, y, x), uint8, on the inference device


def components_to_particles(labels: torch.Tensor, confidence: torch.Tensor, classes: list[str], voxel_size: float,
                            tomogram: str, *, connectivity: int = 26, min_size: int = 0) -> Detections:
    """Connected components of each class → one particle per component at its centroid.

    The score of a particle is the mean winning-class probability over its component.
    """
    coords, component = foreground_components(labels, connectivity)
    if component.numel() == 0:
        return Detections(empty_particles(), labels)
    k = int(component.max()) + 1
    count = torch.bincount(component, minlength=k).double()
    centroid = torch.zeros(k, 3, dtype=torch.float64, device=labels.device)
    centroid.index_add_(0, component, coords.double())
    centroid /= count[:, None]
    score = torch.bincount(component, confidence[coords.unbind(1)].double(), minlength=k) / count
    label = torch.zeros(k, dtype=torch.long, device=labels.device)
    label[component] = labels[coords.unbind(1)].long()
    keep = count >= max(min_size, 1)
    if not bool(keep.any()):
        return Detections(empty_particles(), labels)
    centroid, score, label = (t[keep].cpu().numpy() for t in (centroid, score, label))
    names = [classes[c - 1] for c in label]
    return Detections(make_particles(tomogram, names, voxels_to_angstrom(centroid, voxel_size), score=score), labels)


def normalise_on(volume: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """:func:`normalise` computed on ``device`` (one host→device copy of the raw float32 volume)."""
    array = np.asarray(volume, dtype=np.float32)
    vol = torch.from_numpy(array if array.flags.writeable else array.copy()).to(device)
    std = vol.std().clamp_min(1e-6)
    return (vol - vol.mean()) / std


def detect(model: torch.nn.Module, volume: np.ndarray, classes: list[str], voxel_size: float, tomogram: str, *,
           tile: int = 256, margin: int | None = None, connectivity: int = 26, min_size: int = 0,
           device: torch.device | str = "cpu", amp: bool = False) -> Detections:
    """Find particles in a raw tomogram: normalise → :func:`segment` → :func:`components_to_particles`."""
    labels, confidence = segment(model, normalise_on(volume, device), tile=tile, margin=margin, device=device,
                                 amp=amp)
    return components_to_particles(labels, confidence, classes, voxel_size, tomogram, connectivity=connectivity,
                                   min_size=min_size)
