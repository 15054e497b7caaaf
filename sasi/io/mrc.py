"""MRC tomograms: float32 volumes in z, y, x order with the voxel size in Å from the header."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from sasi.errors import SasiError
from sasi.io.atomic import atomic_write


@dataclass
class Tomogram:
    """A volume (``(z, y, x)`` array) and its isotropic voxel size in Å."""

    data: np.ndarray
    voxel_size: float
    name: str = "tomogram"
    dtype: str = "float32"  # the voxel type on disk (``data`` is float32 unless memory-mapped)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)  # type: ignore[return-value]


def read_mrc(path: str | Path, *, mmap: bool = False, expect_voxel_size: float | None = None,
             allow_nan: bool = False, tolerance: float = 1e-3) -> Tomogram:
    """Read a 3D MRC file strictly (``permissive`` off).

    ``mmap=True`` memory-maps the file instead of loading it (for large tomograms; the data then
    keeps the on-disk dtype). Raises :class:`SasiError` for missing, corrupt or truncated files,
    non-3D or non-numeric data, NaN/inf values, and a voxel size that differs from
    ``expect_voxel_size`` by more than ``tolerance`` (relative).
    """
    path = Path(path)
    if not path.is_file():
        raise SasiError("file not found", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)  # mrcfile warns (not raises) about bad headers
            opener = mrcfile.mmap if mmap else mrcfile.open
            with opener(path, mode="r", permissive=False) as mrc:
                data = mrc.data if mmap else np.asarray(mrc.data)
                vs = mrc.voxel_size
                voxel = (float(vs.x), float(vs.y), float(vs.z))
                if mmap:
                    data = np.asarray(data)  # materialise before the map closes
    except (ValueError, OSError, RuntimeWarning) as exc:
        raise SasiError(f"not a readable MRC file ({_first_line(exc)})", path) from None
    on_disk = str(data.dtype) if data is not None else ""
    if data is None or data.ndim != 3:
        ndim = None if data is None else data.ndim
        raise SasiError(f"expected a 3D volume, got {ndim} dimensions", path)
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise SasiError(f"expected real numeric voxels, got dtype {data.dtype}", path)
    if not mmap:
        data = data.astype(np.float32, copy=False)
    if not allow_nan and np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise SasiError(f"volume contains {bad} NaN/inf voxels", path)
    if not np.allclose(voxel, voxel[0], rtol=tolerance):
        raise SasiError(f"anisotropic voxel size {voxel} Å is not supported", path)
    voxel_size = voxel[0]
    if voxel_size <= 0:
        voxel_size = 1.0 if expect_voxel_size is None else expect_voxel_size
    if expect_voxel_size is not None and abs(voxel_size - expect_voxel_size) > tolerance * expect_voxel_size:
        raise SasiError(f"voxel size {voxel_size:g} Å does not match the expected {expect_voxel_size:g} Å", path)
    return Tomogram(data=data, voxel_size=voxel_size, name=tomogram_name(path), dtype=on_disk)


def tomogram_name(path: str | Path) -> str:
    """A tomogram's name: its folder for the dataset layout (``<dataset>/<tomo>/tomogram.mrc``), else the file
    name without ``.mrc``."""
    path = Path(path)
    stem = path.name.removesuffix(".mrc")
    if stem == "tomogram" and path.resolve().parent.name:
        return path.resolve().parent.name
    return stem


def check_tomogram(tomo: Tomogram, min_edge: int, source: object, values: bool = True) -> None:
    """Reject volumes a detector would turn into nonsense: 8-bit data (MRC mode 0 is ambiguous: signed or
    unsigned bytes), volumes with an edge shorter than ``min_edge`` voxels and (``values``) constant volumes."""
    if tomo.dtype in ("int8", "uint8"):
        raise SasiError("8-bit volume (MRC mode 0: signed or unsigned bytes is ambiguous); convert it to float32 "
                        "first (e.g. IMOD: newstack -mode 2 in.mrc out.mrc)", source)
    if any(edge < min_edge for edge in tomo.shape):
        raise SasiError(f"volume {'×'.join(map(str, tomo.shape))} is smaller than the model's training patch "
                        f"({min_edge} voxels per edge)", source)
    data = np.asarray(tomo.data)
    if values and data.size and float(data.max()) == float(data.min()):
        raise SasiError(f"volume is constant (every voxel {float(data.min()):g}): nothing to detect", source)


def write_mrc(path: str | Path, data: np.ndarray, voxel_size: float) -> Path:
    """Write a volume as MRC (float32 unless integer labels), atomically, with a correct header."""
    path = Path(path)
    data = np.asarray(data)
    if data.ndim != 3:
        raise SasiError(f"can only write 3D volumes, got shape {data.shape}", path)
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.int16 if data.max(initial=0) < 2**15 else np.float32)
    else:
        data = data.astype(np.float32)
    with atomic_write(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = voxel_size
            mrc.update_header_stats()
    return path


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
