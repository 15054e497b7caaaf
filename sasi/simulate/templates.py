"""Particle templates: density maps from MRC files, atomic models, or a small built-in set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from sasi.errors import SasiError
from sasi.io.mrc import read_mrc

MASK_LEVEL = 0.1  # fraction of the template maximum that counts as "inside the particle"


@dataclass
class ParticleClass:
    """One particle species: a density box (``z, y, x``, max 1) and its equivalent-sphere radius in voxels."""

    name: str
    density: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.density > MASK_LEVEL

    @property
    def radius(self) -> float:
        """Radius (voxels) of the sphere with the same volume as the particle mask."""
        return float((3 * self.mask.sum() / (4 * np.pi)) ** (1 / 3))


def _normalise(name: str, density: np.ndarray) -> ParticleClass:
    density = np.clip(density.astype(np.float32), 0, None)
    peak = density.max()
    if not np.isfinite(peak) or peak <= 0:
        raise SasiError(f"template {name!r} has no positive density")
    density = density / peak
    # crop to the mask's bounding cube (symmetric about the centre so rotation stays centred)
    idx = np.argwhere(density > MASK_LEVEL)
    centre = (np.asarray(density.shape) - 1) / 2
    half = int(np.ceil(np.abs(idx - centre).max())) + 2
    c = np.round(centre).astype(int)
    pad = max(0, half - int(c.min()), int((c + half + 1 - np.asarray(density.shape)).max()))
    density = np.pad(density, pad)
    c = c + pad
    box = density[c[0] - half:c[0] + half + 1, c[1] - half:c[1] + half + 1, c[2] - half:c[2] + half + 1]
    return ParticleClass(name=name, density=np.ascontiguousarray(box))


def load_templates(folder: str | Path, voxel_size: float, names: list[str] | None = None) -> list[ParticleClass]:
    """Load ``<name>.mrc`` density maps (and ``.pdb``/``.cif`` models) from ``folder`` at ``voxel_size`` Å."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SasiError("template folder not found", folder)
    files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in {".mrc", ".pdb", ".cif"}}
    names = names or sorted(files)
    missing = [n for n in names if n not in files]
    if missing:
        raise SasiError(f"no template file for class(es) {missing}", folder)
    out = []
    for name in names:
        path = files[name]
        if path.suffix.lower() == ".mrc":
            tomo = read_mrc(path)
            density = tomo.data
            if abs(tomo.voxel_size - voxel_size) > 1e-3 * voxel_size:
                density = ndimage.zoom(density, tomo.voxel_size / voxel_size, order=1)
        else:
            density = density_from_atomic_model(path, voxel_size)
        out.append(_normalise(name, density))
    return out


def density_from_atomic_model(path: str | Path, voxel_size: float, resolution: float | None = None) -> np.ndarray:
    """Turn a PDB/mmCIF model into a density map: atoms binned by atomic number, Gaussian-blurred."""
    try:
        import gemmi
    except ImportError:
        raise SasiError("reading atomic models needs gemmi (pip install gemmi)", path) from None
    structure = gemmi.read_structure(str(path))
    atoms = [(a.pos.tolist(), a.element.atomic_number) for res_model in structure for ch in res_model
             for res in ch for a in res]
    if not atoms:
        raise SasiError("atomic model has no atoms", path)
    xyz = np.array([a[0] for a in atoms]) / voxel_size
    weight = np.array([a[1] for a in atoms], dtype=np.float64)
    xyz -= xyz.mean(axis=0)
    half = int(np.ceil(np.abs(xyz).max())) + 4
    grid = np.zeros((2 * half + 1,) * 3)
    ijk = np.round(xyz[:, ::-1] + half).astype(int)
    np.add.at(grid, tuple(ijk.T), weight)
    sigma = (resolution or 2 * voxel_size) / (2 * voxel_size)
    return ndimage.gaussian_filter(grid, sigma)


def builtin_templates(voxel_size: float = 10.0) -> list[ParticleClass]:
    """Four synthetic particle species of distinct sizes and symmetries (no external files).

    ``ring7`` (heptameric ring, ~ 150 Å), ``tetra`` (tetrahedral assembly, ~ 120 Å), ``rod`` (helical rod
    of 6 subunits, ~ 180 Å long), ``globe`` (large globular particle with a cap, ~ 220 Å).
    """
    s = 10.0 / voxel_size  # geometry below is in units of 10 Å voxels
    specs: dict[str, list[tuple[tuple[float, float, float], float]]] = {
        "ring7": [((0.0, 5.0 * np.cos(a), 5.0 * np.sin(a)), 2.2) for a in np.linspace(0, 2 * np.pi, 7, endpoint=False)],
        "tetra": [((v[0] * 3.2, v[1] * 3.2, v[2] * 3.2), 2.8) for v in
                  [(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)]],
        "rod": [((-7.5 + 3.0 * i, 1.5 * np.cos(i * 1.4), 1.5 * np.sin(i * 1.4)), 2.0) for i in range(6)],
        "globe": [((0.0, 0.0, 0.0), 8.0), ((8.5, 0.0, 0.0), 3.5)],
    }
    return [_normalise(name, _assemble(parts, s)) for name, parts in specs.items()]


def _assemble(parts: list[tuple[tuple[float, float, float], float]], scale: float) -> np.ndarray:
    """Sum soft-edged spheres (centre zyx, radius), in voxels scaled by ``scale``."""
    extent = max(np.abs(c).max() + r for c, r in parts) * scale
    half = int(np.ceil(extent)) + 3
    grid = np.mgrid[-half:half + 1, -half:half + 1, -half:half + 1].astype(np.float32)
    density = np.zeros(grid.shape[1:], np.float32)
    for centre, radius in parts:
        d = np.sqrt(sum((grid[i] - centre[i] * scale) ** 2 for i in range(3)))
        density = np.maximum(density, 1 / (1 + np.exp((d - radius * scale) / 0.6)))
    return density
