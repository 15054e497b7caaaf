"""3D connected components of a label volume, on its device (cc3d on CPU, label propagation on a GPU)."""

from __future__ import annotations

import cc3d
import numpy as np
import torch

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
