"""GPU memory of tiled detection, and the largest tile that fits (``sasi predict --tile auto``).

Peak memory of :func:`~sasi.detect.segment.segment` per tile edge, measured with ``benchmarks/inference.py``
(512³ volume, 13 classes, bf16; ``benchmarks/results/README.md``): 2.5, 5.7, 9.1 and 19.6 GB at tiles 128, 192,
256 and 320 (H100), 91 GB for the whole volume as one tile (H200, the speed issue's measurement). Bigger tiles
overlap less (each keeps its interior only), so they compute fewer voxels: 2.42 s at 256 vs 2.11 s at 320 end to end.
:func:`~sasi.detect.segment.segment` caps the tile at :func:`~sasi.detect.segment.max_tile_edge` whatever fits.
"""

from __future__ import annotations

import math

DETECT_GB = {128: 2.5, 192: 5.7, 256: 9.1, 320: 19.6, 512: 91.0}  # tile edge → peak GB (512³, 13 classes, bf16)
HEADROOM = 0.85  # share of the free memory a tile may use (fragmentation, the maps kept between tiles)


def detection_gb(tile: int, shape_zyx: tuple[int, int, int] | None = None) -> float:
    """Peak detection memory for tiles of edge ``tile`` (per tile voxel, from the nearest measured edge), smaller
    when the volume is smaller than a tile in some axis."""
    near = min(DETECT_GB, key=lambda t: abs(t - tile))
    voxels = math.prod(min(tile, d) for d in shape_zyx) if shape_zyx else tile**3
    return DETECT_GB[near] / near**3 * voxels


def largest_tile(free_gb: float, shape_zyx: tuple[int, int, int], floor: int = 64) -> int:
    """The largest tile edge (a multiple of 4, at least ``floor``) whose detection peak fits in
    :data:`HEADROOM` × ``free_gb``; the whole volume (its longest edge, rounded up to 4) when that fits."""
    whole = -(-max(shape_zyx) // 4) * 4
    budget = HEADROOM * free_gb
    fits = [t for t in range(floor, whole + 1, 4) if detection_gb(t, shape_zyx) <= budget]
    return max(fits, default=floor)
