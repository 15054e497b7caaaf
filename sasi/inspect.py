"""``sasi inspect``: a short summary of an MRC volume or a particle table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from sasi.errors import SasiError
from sasi.io import read_mrc, read_particles
from sasi.io.particles import FORMATS


def describe(path: Path) -> Table:
    suffix = path.suffix.lower()
    if suffix in {".mrc", ".rec", ".map"}:
        return _describe_mrc(path)
    if suffix in FORMATS:
        return _describe_particles(path)
    raise SasiError(f"cannot inspect {suffix!r} files (MRC or {FORMATS})", path)


def _describe_mrc(path: Path) -> Table:
    tomo = read_mrc(path, mmap=True, allow_nan=True)
    data = np.asarray(tomo.data, dtype=np.float32)
    finite = np.isfinite(data)
    table = Table(title=str(path), show_header=False)
    rows = {
        "shape (z, y, x)": str(tomo.shape),
        "voxel size": f"{tomo.voxel_size:g} Å",
        "extent (x, y, z)": " × ".join(f"{s * tomo.voxel_size / 10:g}" for s in tomo.shape[::-1]) + " nm",
        "dtype on disk": str(tomo.data.dtype),
        "min / max": f"{data[finite].min():.4g} / {data[finite].max():.4g}" if finite.any() else "n/a",
        "mean ± std": f"{data[finite].mean():.4g} ± {data[finite].std():.4g}" if finite.any() else "n/a",
        "non-finite voxels": str(int((~finite).sum())),
    }
    for k, v in rows.items():
        table.add_row(k, v)
    return table


def _describe_particles(path: Path) -> Table:
    particles = read_particles(path)
    table = Table(title=f"{path} · {particles.num_rows} particles")
    for col in ("tomogram", "label", "count", "x range (Å)", "y range (Å)", "z range (Å)"):
        table.add_column(col)
    df = particles.to_pandas()
    for (tomo, label), group in df.groupby(["tomogram", "label"]):
        ranges = [f"{group[c].min():.0f}–{group[c].max():.0f}" for c in ("x", "y", "z")]
        table.add_row(str(tomo), str(label), str(len(group)), *ranges)
    return table
