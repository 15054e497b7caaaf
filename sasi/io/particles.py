"""Particle tables: ``tomogram, label, x, y, z[, score]`` with x/y/z in Å (origin at voxel 0 centre).

Tables are :class:`pyarrow.Table` objects and are stored as Parquet, CSV or RELION STAR
(RELION 5 ``rlnCenteredCoordinate{X,Y,Z}Angst`` relative to the tomogram centre ``N/2``, or
pixel-based ``rlnCoordinate{X,Y,Z}``). The format follows the file suffix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from sasi.errors import SasiError
from sasi.io.atomic import atomic_write

PARTICLE_SCHEMA = pa.schema(
    [("tomogram", pa.string()), ("label", pa.string()),
     ("x", pa.float64()), ("y", pa.float64()), ("z", pa.float64())]
)
SCORE = pa.field("score", pa.float64())
FORMATS = (".parquet", ".csv", ".star")
_STAR_CENTERED = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
_STAR_PIXEL = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")


def make_particles(tomogram: str | Sequence[str], label: Sequence[str], xyz_angstrom: np.ndarray,
                   score: Sequence[float] | None = None) -> pa.Table:
    """Build a particle table from labels and an ``(n, 3)`` array of x, y, z in Å."""
    xyz = np.asarray(xyz_angstrom, dtype=np.float64).reshape(-1, 3)
    n = len(xyz)
    tomos = [tomogram] * n if isinstance(tomogram, str) else list(tomogram)
    cols = {"tomogram": tomos, "label": list(label), "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    schema = PARTICLE_SCHEMA
    if score is not None:
        cols["score"] = np.asarray(score, dtype=np.float64)
        schema = schema.append(SCORE)
    return pa.table(cols, schema=schema)


def empty_particles() -> pa.Table:
    return PARTICLE_SCHEMA.empty_table()


def particles_to_voxels(table: pa.Table, voxel_size: float) -> np.ndarray:
    """Return an ``(n, 3)`` float array of **z, y, x** voxel coordinates."""
    xyz = np.stack([table.column(c).to_numpy() for c in ("x", "y", "z")], axis=1).astype(np.float64)
    return xyz[:, ::-1] / voxel_size


def voxels_to_angstrom(zyx: np.ndarray, voxel_size: float) -> np.ndarray:
    """Inverse of :func:`particles_to_voxels`: ``(n, 3)`` z, y, x voxels to x, y, z Å."""
    return np.asarray(zyx, dtype=np.float64).reshape(-1, 3)[:, ::-1] * voxel_size


def write_particles(table: pa.Table, path: str | Path, *, voxel_size: float | None = None,
                    shape_zyx: Sequence[int] | None = None, star_coordinates: str = "centered") -> Path:
    """Write a particle table; the suffix picks the format (``.parquet``, ``.csv``, ``.star``).

    STAR needs ``shape_zyx`` and ``voxel_size`` for centred coordinates (``star_coordinates="centered"``)
    or ``voxel_size`` for pixel coordinates (``"pixel"``).
    """
    path = Path(path)
    table = _conform(table, path)
    fmt = _format(path)
    with atomic_write(path) as tmp:
        if fmt == ".parquet":
            pq.write_table(table, tmp)
        elif fmt == ".csv":
            pacsv.write_csv(table, tmp)
        else:
            _write_star(table, tmp, voxel_size, shape_zyx, star_coordinates, path)
    return path


def read_particles(path: str | Path, *, voxel_size: float | None = None,
                   shape_zyx: Sequence[int] | None = None) -> pa.Table:
    """Read a particle table from Parquet, CSV or STAR (pixel STAR needs ``voxel_size``)."""
    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise SasiError("file not found", path)
    try:
        if fmt == ".parquet":
            table = pq.read_table(path)
        elif fmt == ".csv":
            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
                column_types={"tomogram": pa.string(), "label": pa.string()}))
        else:
            table = _read_star(path, voxel_size, shape_zyx)
    except SasiError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad file
        raise SasiError(f"cannot parse particle table ({str(exc).splitlines()[0]})", path) from None
    return _conform(table, path)


def validate_particles(table: pa.Table, *, shape_zyx: Sequence[int], voxel_size: float,
                       classes: Iterable[str] | None = None, source: object = "particles") -> None:
    """Raise :class:`SasiError` if coordinates are NaN or outside the volume, or labels are unknown."""
    if table.num_rows == 0:
        return
    zyx = particles_to_voxels(table, voxel_size)
    if not np.isfinite(zyx).all():
        raise SasiError("coordinates contain NaN/inf", source)
    upper = np.asarray(shape_zyx, dtype=np.float64) - 0.5
    outside = ((zyx < -0.5) | (zyx > upper)).any(axis=1)
    if outside.any():
        i = int(np.argmax(outside))
        x, y, z = (table.column(c)[i].as_py() for c in ("x", "y", "z"))
        extent = tuple(float(s * voxel_size) for s in shape_zyx[::-1])
        raise SasiError(f"{int(outside.sum())} particle(s) outside the volume, first at row {i}: "
                        f"(x, y, z) = ({x:g}, {y:g}, {z:g}) Å, volume x/y/z extent {extent} Å", source)
    if classes is not None:
        known = set(classes)
        unknown = sorted(set(table.column("label").to_pylist()) - known)
        if unknown:
            raise SasiError(f"unknown class name(s) {unknown}; known: {sorted(known)}", source)


def _conform(table: pa.Table, path: Path) -> pa.Table:
    missing = [f.name for f in PARTICLE_SCHEMA if f.name not in table.column_names]
    if missing:
        raise SasiError(f"particle table lacks column(s) {missing}", path)
    schema = PARTICLE_SCHEMA.append(SCORE) if "score" in table.column_names else PARTICLE_SCHEMA
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SasiError(f"particle table has wrong column types ({str(exc).splitlines()[0]})", path) from None


def _format(path: Path) -> str:
    fmt = path.suffix.lower()
    if fmt not in FORMATS:
        raise SasiError(f"unknown particle table format {fmt!r}; use one of {FORMATS}", path)
    return fmt


def _write_star(table: pa.Table, tmp: Path, voxel_size, shape_zyx, mode: str, path: Path) -> None:
    import starfile

    if voxel_size is None or (mode == "centered" and shape_zyx is None):
        raise SasiError("writing STAR needs the voxel size (and the volume shape for centred coordinates)", path)
    xyz = np.stack([table.column(c).to_numpy() for c in ("x", "y", "z")], axis=1)
    df = pd.DataFrame({"rlnTomoName": table.column("tomogram").to_pylist()})
    if mode not in ("centered", "pixel"):
        raise SasiError(f"unknown STAR coordinate mode {mode!r} (centered|pixel)", path)
    if mode == "centered":
        centre = np.asarray(shape_zyx[::-1], dtype=np.float64) / 2 * voxel_size
        for name, col in zip(_STAR_CENTERED, (xyz - centre).T):
            df[name] = col
    for name, col in zip(_STAR_PIXEL, (xyz / voxel_size).T):  # always: readable without the shape
        df[name] = col
    df["rlnTomoTiltSeriesPixelSize"] = voxel_size
    df["sasiLabel"] = table.column("label").to_pylist()
    if "score" in table.column_names:
        df["rlnAutopickFigureOfMerit"] = table.column("score").to_numpy()
    starfile.write({"particles": df}, tmp, overwrite=True)


def _read_star(path: Path, voxel_size, shape_zyx) -> pa.Table:
    import starfile

    blocks = starfile.read(path, always_dict=True)
    df = next((b for b in blocks.values() if isinstance(b, pd.DataFrame)), None)
    if df is None:
        raise SasiError("STAR file has no particle loop", path)
    if "rlnTomoTiltSeriesPixelSize" in df and voxel_size is None:
        voxel_size = float(df["rlnTomoTiltSeriesPixelSize"].iloc[0])
    if all(c in df for c in _STAR_PIXEL) and voxel_size is not None:
        xyz = df[list(_STAR_PIXEL)].to_numpy(np.float64) * voxel_size
    elif all(c in df for c in _STAR_CENTERED):
        if shape_zyx is None:
            raise SasiError("centred STAR coordinates need the tomogram shape to convert", path)
        if voxel_size is None:
            raise SasiError("centred STAR coordinates need the voxel size", path)
        centre = np.asarray(shape_zyx[::-1], dtype=np.float64) / 2 * voxel_size
        xyz = df[list(_STAR_CENTERED)].to_numpy(np.float64) + centre
    elif all(c in df for c in _STAR_PIXEL):
        raise SasiError("pixel STAR coordinates need the voxel size (rlnTomoTiltSeriesPixelSize)", path)
    else:
        raise SasiError("STAR file has neither rlnCenteredCoordinate*Angst nor rlnCoordinate* columns", path)
    tomos = df["rlnTomoName"].astype(str).tolist() if "rlnTomoName" in df else [path.stem] * len(df)
    if "sasiLabel" in df:
        labels = df["sasiLabel"].astype(str).tolist()
    elif "rlnClassNumber" in df:
        labels = df["rlnClassNumber"].astype(str).tolist()
    else:
        labels = ["particle"] * len(df)
    score = df["rlnAutopickFigureOfMerit"].to_numpy() if "rlnAutopickFigureOfMerit" in df else None
    return make_particles(tomos, labels, xyz, score)
