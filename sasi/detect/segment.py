"""Tiled fully convolutional inference: a tomogram → per-voxel class maps (:class:`SegmentationMaps`)."""

from __future__ import annotations

import inspect
import itertools
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from sasi.errors import SasiError
from sasi.model.limits import INDEX_LIMIT, widest_activation


def normalise(volume: np.ndarray) -> np.ndarray:
    """Per-tomogram z-score (DeepFinder / DeepETPicker standardisation)."""
    volume = np.asarray(volume, dtype=np.float32)
    return (volume - volume.mean()) / max(float(volume.std()), 1e-6)


def receptive_context(model: torch.nn.Module) -> int:
    """Input voxels on either side that one output voxel depends on (``model.context``; 36 if it has none)."""
    return int(getattr(model, "context", 36))


def max_tile_edge(model: torch.nn.Module) -> int:
    """The largest tile edge (a multiple of 4) whose every tensor in ``model`` stays within :data:`INDEX_LIMIT`:
    296 for the DeepFinder U-Net (80 channels where the full-resolution skip is concatenated)."""
    voxels = INDEX_LIMIT / widest_activation(model)
    edge = round(voxels ** (1 / 3))
    edge -= edge**3 > voxels  # the float cube root may be one off
    return edge // 4 * 4


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


@dataclass
class SegmentationMaps:
    """What one inference pass keeps per voxel (z, y, x, on the inference device); never the C-channel map.

    ``labels``: argmax over background and classes (uint8, 0 = background). ``foreground``: 1 − P(background)
    (float16). ``best_class``: the most probable particle class, 1-based (uint8). ``best_prob``: its
    probability (float16); where ``labels`` is a class, the winning probability.
    """

    labels: torch.Tensor
    foreground: torch.Tensor
    best_class: torch.Tensor
    best_prob: torch.Tensor

    @classmethod
    def empty(cls, shape: tuple[int, ...], device: torch.device) -> SegmentationMaps:
        u8, f16 = dict(dtype=torch.uint8, device=device), dict(dtype=torch.float16, device=device)
        return cls(torch.zeros(shape, **u8), torch.zeros(shape, **f16), torch.zeros(shape, **u8),
                   torch.zeros(shape, **f16))

    def crop(self, where: tuple[slice, ...]) -> SegmentationMaps:
        return SegmentationMaps(*(m[where] for m in (self.labels, self.foreground, self.best_class, self.best_prob)))

    def put(self, where: tuple[slice, ...], probabilities: torch.Tensor) -> None:
        """Store the maps of a ``(C, ...)`` softmax block at ``where``."""
        best_prob, best = probabilities[1:].max(dim=0)
        self.labels[where] = torch.where(best_prob > probabilities[0], best + 1, 0).to(torch.uint8)
        self.foreground[where] = (1 - probabilities[0]).half()
        self.best_class[where] = (best + 1).to(torch.uint8)
        self.best_prob[where] = best_prob.half()


@torch.no_grad()
def segment(model: torch.nn.Module, volume: np.ndarray | torch.Tensor, *, tile: int = 256, margin: int | None = None,
            device: torch.device | str = "cpu", amp: bool = False) -> SegmentationMaps:
    """Per-voxel :class:`SegmentationMaps` of a (normalised) volume, on ``device``.

    The volume (reflect-padded to a multiple of 4) is cut into balanced cubes of edge at most ``tile`` that
    overlap by ``2·margin``; each keeps its interior. With ``margin`` at least the network's receptive context
    (the default, :func:`receptive_context`) the result is that of one whole-volume pass. Tiles are never larger
    than :func:`max_tile_edge`: beyond it a 512³ volume as one tile came out all background on an H200.
    """
    device = torch.device(device)
    margin = receptive_context(model) if margin is None else margin
    tile = min(tile, max_tile_edge(model))
    vol = torch.as_tensor(volume, dtype=torch.float32).to(device)
    shape = vol.shape
    pad = [(-s) % 4 for s in shape]  # every tile (and the pooling grid) must be a multiple of 4
    if any(pad):
        vol = torch.nn.functional.pad(vol[None, None], (0, pad[2], 0, pad[1], 0, pad[0]), mode="reflect")[0, 0]
    full = vol.shape
    grid = [tile_starts(s, tile, margin) for s in full]
    edges = [g[0] for g in grid]
    maps = SegmentationMaps.empty(full, device)
    was_training = model.training
    model.eval()
    # a model that can decode only the kept interior (DeepFinderUNet: its ends must be on the pooling grid)
    interior_only = "keep" in inspect.signature(model.forward).parameters and margin % 4 == 0
    for corner in itertools.product(*(g[1] for g in grid)):
        block = vol[tuple(slice(c, c + e) for c, e in zip(corner, edges))][None, None]
        src, dst = [], []
        for start, e, s in zip(corner, edges, full):
            lo = 0 if start == 0 else margin
            hi = e if start + e >= s else e - margin
            src.append(slice(lo, hi))
            dst.append(slice(start + lo, start + hi))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"), \
                _cudnn_heuristics():
            logits = model(block, keep=tuple(src)) if interior_only else model(block)[(..., *src)]
        maps.put(tuple(dst), torch.softmax(logits[0].float(), dim=0))
    model.train(was_training)
    return maps.crop(tuple(slice(0, s) for s in shape))


SLAB_BYTES = 64 * 2**20  # host → GPU streaming unit of :func:`upload`


def upload(volume: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """``volume`` (any real dtype, e.g. a memory-mapped MRC) as float32 on ``device``.

    On CUDA it goes z-slab by z-slab through two pinned buffers, so reading the next slab (from disk or the page
    cache) overlaps the copy of the previous one to the GPU, and the host never holds a float32 copy of the whole.
    """
    device = torch.device(device)
    if device.type != "cuda":
        array = np.asarray(volume, dtype=np.float32)
        return torch.from_numpy(array if array.flags.writeable else array.copy()).to(device)
    out = torch.empty(volume.shape, dtype=torch.float32, device=device)
    step = max(1, SLAB_BYTES // (4 * math.prod(volume.shape[1:])))
    pinned = [torch.empty((step, *volume.shape[1:]), dtype=torch.float32, pin_memory=True) for _ in range(2)]
    copied: list[torch.cuda.Event | None] = [None, None]
    for i, z in enumerate(range(0, volume.shape[0], step)):
        n, k = min(step, volume.shape[0] - z), i % 2
        if copied[k] is not None:
            copied[k].synchronize()  # this buffer's previous slab has reached the GPU
        np.copyto(pinned[k].numpy()[:n], volume[z:z + n], casting="unsafe")
        out[z:z + n].copy_(pinned[k][:n], non_blocking=True)
        copied[k] = torch.cuda.Event()
        copied[k].record()
    return out


def normalise_on(volume: np.ndarray, device: torch.device | str, source: object | None = None) -> torch.Tensor:
    """:func:`normalise` computed on ``device`` (the raw volume streamed there by :func:`upload`).

    ``source`` (where the volume came from): a volume with NaN/inf voxels or one constant value raises
    :class:`SasiError` naming it (checked on the device: one sync).
    """
    vol = upload(volume, device)
    mean, std = vol.mean(), vol.std()
    if source is not None and not (torch.isfinite(mean) and std > 0):
        bad = int((~torch.isfinite(vol)).sum())
        if bad:
            raise SasiError(f"volume contains {bad} NaN/inf voxels", source)
        if float(vol.amax()) == float(vol.amin()):
            raise SasiError(f"volume is constant (every voxel {float(vol[(0,) * vol.dim()]):g}): nothing to detect",
                            source)
    return (vol - mean) / std.clamp_min(1e-6)


