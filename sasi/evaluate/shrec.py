"""The SHREC 2021 rule: a pick hits the particle whose instance-map voxel it lands in; the first pick decides.

Picks are taken in file order (write them sorted by score, as :mod:`sasi.detect` does). The first pick on a
truth particle *claims* it; later picks on it are duplicates. Localisation counts claimed particles whatever
the pick's class (the SaSi paper's F1); class-aware scoring counts a claimed particle only when its first pick
carries its class, as the SHREC classification does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from sasi.errors import SasiError
from sasi.evaluate.points import Points
from sasi.evaluate.scores import MICRO_LABEL, ClassScore, PickBreakdown

MISS, OUTSIDE = -1, -2


@dataclass(frozen=True)
class ShrecResult:
    localisation: ClassScore  # class-agnostic, pooled
    class_aware: ClassScore  # pooled
    per_class: dict[str, ClassScore]  # class-aware
    breakdown: PickBreakdown


def score_shrec(t: Points, truth: pa.Table, p: Points, zyx: np.ndarray, maps: Mapping[str, np.ndarray] | None,
                classes: list[str]) -> ShrecResult:
    """SHREC scores of picks ``p`` (voxel coordinates ``zyx``) against truth ``t`` and its instance maps."""
    hits = pick_hits(t, instance_ids(truth, t), p, zyx, maps)
    found = hits >= 0
    first = np.zeros(len(p), bool)
    _, index = np.unique(hits[found], return_index=True)
    first[np.flatnonzero(found)[index]] = True
    right = first.copy()
    right[first] = p.label[first] == t.label[hits[first]]
    breakdown = PickBreakdown(true=int(right.sum()), wrong_class=int((first & ~right).sum()),
                              duplicate=int((found & ~first).sum()), background=int((hits == MISS).sum()),
                              outside=int((hits == OUTSIDE).sum()))
    per_class = {c: ClassScore.from_counts(c, int((right & (p.label == c)).sum()), int((p.label == c).sum()),
                                           int((t.label == c).sum())) for c in classes}
    return ShrecResult(ClassScore.from_counts(MICRO_LABEL, int(first.sum()), len(p), len(t)),
                       ClassScore.from_counts(MICRO_LABEL, int(right.sum()), len(p), len(t)), per_class, breakdown)


def instance_ids(table: pa.Table, t: Points) -> np.ndarray:
    """Instance id of every truth row: the ``instance`` column, else the 1-based row index per tomogram."""
    if "instance" in table.column_names:
        column = table.column("instance")
        if column.null_count or not pa.types.is_integer(column.type):
            raise SasiError(f"'instance' column must be integers without nulls, got {column.type}", "truth")
        ids = column.to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        ids = np.zeros(len(t), np.int64)
        for tomo in np.unique(t.tomogram):
            rows = t.tomogram == tomo
            ids[rows] = np.arange(1, rows.sum() + 1)
    for tomo in np.unique(t.tomogram):
        own = ids[t.tomogram == tomo]
        if (own <= 0).any() or len(np.unique(own)) != len(own):
            raise SasiError(f"instance ids in tomogram {tomo!r} must be positive and unique", "truth")
    return ids


def pick_hits(t: Points, ids: np.ndarray, p: Points, zyx: np.ndarray,
              maps: Mapping[str, np.ndarray] | None) -> np.ndarray:
    """Truth row hit by every pick; ``MISS`` on background, ``OUTSIDE`` when its nearest voxel is out of the map."""
    maps = maps or {}
    missing = sorted((set(t.tomogram) | set(p.tomogram)) - set(maps))
    if missing:
        raise SasiError(f"rule 'shrec' needs an instance map for every tomogram; missing {missing}")
    hits = np.full(len(p), MISS, np.int64)
    for tomo in np.unique(p.tomogram):
        volume = _instance_map(maps[tomo], tomo)
        picks = np.flatnonzero(p.tomogram == tomo)
        voxels = np.rint(zyx[picks]).astype(np.int64)
        inside = ((voxels >= 0) & (voxels < np.asarray(volume.shape))).all(axis=1)
        rows = np.flatnonzero(t.tomogram == tomo)
        hits[picks[~inside]] = OUTSIDE
        hits[picks[inside]] = _rows_of_ids(volume[tuple(voxels[inside].T)], ids[rows], rows)
    return hits


def _instance_map(volume: np.ndarray, tomo: str) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 3 or not np.issubdtype(volume.dtype, np.integer):
        raise SasiError(f"instance map of tomogram {tomo!r} must be a 3-D integer array, "
                        f"got {volume.ndim}-D {volume.dtype}")
    return volume


def _rows_of_ids(values: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Map instance-map values to truth rows (``MISS`` where no truth row has that id)."""
    if len(ids) == 0:
        return np.full(len(values), MISS, np.int64)
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], values).clip(max=len(ids) - 1)
    found = (values > 0) & (ids[order][pos] == values)
    return np.where(found, rows[order][pos], MISS)
