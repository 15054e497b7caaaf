"""copick projects in and out: runs → a sasi dataset folder, sasi picks → copick picks.

copick (``pip install sasi[copick]``) keeps, per *run*, tomograms at one or more voxel spacings and
point picks per *pickable object*, user and session, with locations in Å as x, y, z measured from the
centre of voxel 0 — sasi's convention (:mod:`sasi.io.particles`), so coordinates pass through unchanged.

:func:`import_copick` writes a dataset in the layout of :mod:`sasi.dataset` (one folder per run):
``tomogram.mrc`` (level 0 of the chosen tomogram), ``particles.parquet`` (the picks of every particle
object, location plus the transform's shift) and, because copick has no instance map, an
``occupancy_mask.mrc`` of spheres of the class radius around each pick (instance id = row + 1) and the
matching ``labels.mrc``, so SHREC-rule scoring and ``background: certain`` work on imported data.
:func:`export_picks` writes a particle table back as one picks set per (run, class), for a user and
session id of your choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from sasi.dataset import Dataset, writing_dataset
from sasi.errors import SasiError
from sasi.io.mrc import write_mrc
from sasi.io.particles import make_particles, particles_to_voxels, validate_particles, write_particles

UNLABELLED = "unlabelled"  # split of runs that have a tomogram but no picks of the chosen objects


def open_project(config: str | Path):
    """The copick root of a project config (JSON); a :class:`SasiError` if copick is missing or it fails."""
    try:
        import copick
    except ImportError:
        raise SasiError("copick projects need the copick package (pip install 'sasi[copick]')") from None
    if not Path(config).is_file():
        raise SasiError("copick config not found", config)
    try:
        return copick.from_file(str(config))
    except Exception as exc:  # noqa: BLE001 - pydantic/JSON/filesystem errors all mean a bad config
        raise SasiError(f"cannot open copick project ({_first_line(exc)})", config) from None


def particle_objects(root, classes: Sequence[str] | None = None) -> dict[str, float]:
    """Name → radius (Å) of the project's particle objects (``is_particle``), optionally a subset."""
    objects = {o.name: o.radius for o in root.config.pickable_objects if o.is_particle}
    if classes:
        unknown = sorted(set(classes) - set(objects))
        if unknown:
            raise SasiError(f"no particle object(s) {unknown} in the copick project; known: {sorted(objects)}")
        objects = {c: objects[c] for c in classes}
    if not objects:
        raise SasiError("the copick project has no particle objects (pickable_objects with is_particle: true)")
    missing = sorted(name for name, r in objects.items() if not r or r <= 0)
    if missing:
        raise SasiError(f"particle object(s) {missing} have no radius (Å) in the copick config; sasi needs one")
    return {name: float(r) for name, r in objects.items()}


def read_run_picks(run, objects: Sequence[str], *, user_id: str | None = None,
                   session_id: str | None = None) -> pa.Table:
    """The run's picks of ``objects`` as a sasi particle table (tomogram = run name; score if every point has one).

    Without ``user_id``/``session_id`` an object picked by several (user, session) pairs is ambiguous
    (ground truth and a model's picks would mix), so that raises; pass the ids to choose.
    """
    sets = run.get_picks(object_name=list(objects), user_id=user_id, session_id=session_id)
    by_object: dict[str, list] = {}
    for picks in sets:
        by_object.setdefault(picks.pickable_object_name, []).append(picks)
    if user_id is None or session_id is None:
        for name, group in sorted(by_object.items()):
            owners = sorted({(p.user_id, p.session_id) for p in group})
            if len(owners) > 1:
                raise SasiError(f"run {run.name!r}: {name!r} has picks from several (user, session) pairs {owners}; "
                                "choose with --user/--session")
    labels, xyz = [], []
    for name in objects:
        for picks in by_object.get(name, []):
            positions = np.asarray(picks.full_positions(), dtype=np.float64).reshape(-1, 3)
            labels += [name] * len(positions)
            xyz.append(positions)
    return make_particles(run.name, labels, np.concatenate(xyz) if xyz else np.zeros((0, 3)))


def import_copick(config: str | Path, out: str | Path, *, voxel_size: float | None = None,
                  tomo_type: str | None = None, user_id: str | None = None, session_id: str | None = None,
                  classes: Sequence[str] | None = None, splits: Mapping[str, Sequence[str]] | None = None,
                  runs: Sequence[str] | None = None) -> Dataset:
    """Write a copick project (or some of its ``runs``) as a sasi dataset folder ``out`` (all or nothing).

    ``voxel_size`` and ``tomo_type`` choose the tomogram when a run has several. ``splits`` maps split
    names to run names; by default sorted runs with picks go first to ``train``, then ``val``, the rest to
    ``test``, and runs without picks to ``unlabelled``.
    """
    root = open_project(config)
    radii = particle_objects(root, classes)
    names = list(radii)
    chosen = _choose_runs(root, runs)
    voxel = _choose_voxel_size(chosen, voxel_size)
    labelled, unlabelled, types = [], [], set()
    with writing_dataset(out) as staging:
        for run in chosen:
            tomogram = _choose_tomogram(run, voxel, tomo_type)
            if tomogram is None:
                continue
            types.add(tomogram.tomo_type)
            volume = np.asarray(tomogram.numpy(), dtype=np.float32)
            table = read_run_picks(run, names, user_id=user_id, session_id=session_id)
            validate_particles(table, shape_zyx=volume.shape, voxel_size=voxel, classes=names,
                               source=f"copick run {run.name!r}")
            folder = staging / run.name
            folder.mkdir()
            write_mrc(folder / "tomogram.mrc", volume, voxel)
            write_particles(table, folder / "particles.parquet")
            instances = sphere_instances(volume.shape, table, voxel, radii)
            class_of = np.array([0] + [names.index(c) + 1 for c in table.column("label").to_pylist()], np.int16)
            write_mrc(folder / "occupancy_mask.mrc", instances, voxel)
            write_mrc(folder / "labels.mrc", class_of[instances], voxel)
            (labelled if table.num_rows else unlabelled).append(run.name)
        if not labelled and not unlabelled:
            raise SasiError(f"no run has a tomogram at {voxel:g} Å" + (f" of type {tomo_type!r}" if tomo_type else ""),
                            config)
        dataset = Dataset(root=staging, classes=names, radii=radii, voxel_size=voxel,
                          splits=_splits(labelled, unlabelled, splits),
                          meta={"source": {"copick": str(config), "tomo_type": sorted(types), "user_id": user_id,
                                           "session_id": session_id},
                                "occupancy": "spheres of the class radius around each pick"})
        dataset.save()
    dataset.root = Path(out)
    return dataset


def export_picks(table: pa.Table, config: str | Path, *, user_id: str = "sasi", session_id: str = "0",
                 run: str | None = None, overwrite: bool = False) -> dict[tuple[str, str], int]:
    """Write a particle table into a copick project: one picks set per (run, class) for ``user_id``/``session_id``.

    Each row's ``tomogram`` names its run (``run`` puts every row into one run instead); each ``label``
    must be a particle object of the project. Scores travel as copick point scores. An existing picks
    set of the same run, object, user and session is replaced only with ``overwrite``. Returns the
    number of points written per (run, object).
    """
    root = open_project(config)
    objects = {o.name for o in root.config.pickable_objects if o.is_particle}
    tomos = [run] * table.num_rows if run else table.column("tomogram").to_pylist()
    labels = table.column("label").to_pylist()
    unknown = sorted(set(labels) - objects)
    if unknown:
        raise SasiError(f"class(es) {unknown} are not particle objects of the copick project; known: {sorted(objects)}",
                        config)
    runs = {name: root.get_run(name) for name in sorted(set(tomos))}
    missing = sorted(name for name, r in runs.items() if r is None)
    if missing:
        raise SasiError(f"no copick run(s) {missing}; known: {sorted(r.name for r in root.runs)} "
                        "(name the run with --run if the picks came from a single tomogram)", config)
    xyz = np.stack([table.column(c).to_numpy() for c in ("x", "y", "z")], axis=1).astype(np.float64)
    score = table.column("score").to_numpy().astype(np.float64) if "score" in table.column_names else None
    tomos_a, labels_a = np.asarray(tomos, dtype=object), np.asarray(labels, dtype=object)
    written = {}
    for (name, label) in sorted(set(zip(tomos, labels))):
        rows = np.flatnonzero((tomos_a == name) & (labels_a == label))
        existing = runs[name].get_picks(object_name=label, user_id=user_id, session_id=session_id)
        if existing and not overwrite:
            raise SasiError(f"run {name!r} already has {label!r} picks by user {user_id!r} in session {session_id!r}; "
                            "pass --overwrite or another --session", config)
        picks = runs[name].new_picks(label, session_id, user_id, exist_ok=True)
        picks.from_numpy(xyz[rows], scores=None if score is None else score[rows])
        written[(name, label)] = len(rows)
    return written


def sphere_instances(shape_zyx: Sequence[int], table: pa.Table, voxel_size: float,
                     radii: Mapping[str, float]) -> np.ndarray:
    """Instance map: a ball of the class radius around each particle (id = row + 1; earlier rows win overlaps)."""
    instances = np.zeros(tuple(shape_zyx), np.int32)
    zyx = particles_to_voxels(table, voxel_size)
    for i, (centre, label) in enumerate(zip(zyx, table.column("label").to_pylist())):
        r = radii[label] / voxel_size
        lo = np.maximum(np.floor(centre - r).astype(int), 0)
        hi = np.minimum(np.ceil(centre + r).astype(int) + 1, shape_zyx)
        if np.any(hi <= lo):
            continue
        grid = np.ogrid[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        ball = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= max(r, 0.5) ** 2
        box = instances[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        box[ball & (box == 0)] = i + 1
    return instances


def _choose_runs(root, runs: Sequence[str] | None) -> list:
    available = {r.name: r for r in root.runs}
    if not available:
        raise SasiError("the copick project has no runs")
    if runs:
        missing = sorted(set(runs) - set(available))
        if missing:
            raise SasiError(f"no copick run(s) {missing}; known: {sorted(available)}")
        return [available[n] for n in runs]
    return [available[n] for n in sorted(available)]


def _choose_voxel_size(runs: list, voxel_size: float | None) -> float:
    sizes = sorted({float(vs.voxel_size) for run in runs for vs in run.voxel_spacings if vs.tomograms})
    if voxel_size is not None:
        if not any(abs(s - voxel_size) <= 1e-3 * voxel_size for s in sizes):
            raise SasiError(f"no tomogram at {voxel_size:g} Å; voxel spacings with tomograms: {sizes}")
        return float(voxel_size)
    if len(sizes) != 1:
        raise SasiError(f"choose a voxel spacing with --voxel-size; the project has tomograms at {sizes} Å"
                        if sizes else "the copick project has no tomograms")
    return sizes[0]


def _choose_tomogram(run, voxel_size: float, tomo_type: str | None):
    spacing = next((vs for vs in run.voxel_spacings if abs(vs.voxel_size - voxel_size) <= 1e-3 * voxel_size), None)
    if spacing is None:
        return None
    tomograms = [t for t in spacing.tomograms if tomo_type is None or t.tomo_type == tomo_type]
    types = sorted({t.tomo_type for t in tomograms})
    if len(types) > 1:
        raise SasiError(f"run {run.name!r} has tomogram types {types} at {voxel_size:g} Å; choose one with --tomo-type")
    return tomograms[0] if tomograms else None


def _splits(labelled: list[str], unlabelled: list[str], given: Mapping[str, Sequence[str]] | None
            ) -> dict[str, list[str]]:
    if given:
        known = set(labelled) | set(unlabelled)
        named = [n for names in given.values() for n in names]
        bad = sorted(set(named) - known)
        if bad:
            raise SasiError(f"split(s) name run(s) {bad} that were not imported; imported: {sorted(known)}")
        return {split: list(names) for split, names in given.items()}
    out: dict[str, Any] = {"train": labelled[:1]}
    if len(labelled) > 1:
        out["val"] = labelled[1:2]
    if len(labelled) > 2:
        out["test"] = labelled[2:]
    if unlabelled:
        out[UNLABELLED] = unlabelled
    return {k: v for k, v in out.items() if v}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
