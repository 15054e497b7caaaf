"""Pre-flight checks for ``sasi train``, ``sasi tune`` and ``sasi ablate``: everything knowable before Ray starts.

Each check raises a one-line :class:`~sasi.errors.SasiError` naming what is wrong and how to fix it, so a bad
storage path, a missing dataset, more shots than labelled particles, an unknown objective metric or zero
trials fail in seconds instead of inside Ray trials minutes later. The storage checks import nothing heavy
(no torch, no Ray), so the CLI runs them first.

Resume safety (a changed suite or search is not mixed into stored results) is :mod:`sasi.platform.resume_safety`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sasi.errors import SasiError
from sasi.metrics import VALIDATION_METRICS as SCORED_AT_VALIDATION

# Metrics a training run reports at every evaluation, usable as a search objective (ASHA needs one that is
# reported during training): sasi.metrics.VALIDATION_METRICS, prefixed ``val_``.
VALIDATION_METRICS = tuple(f"val_{name}" for name in SCORED_AT_VALIDATION)
OBJECTIVE_METRICS = (*VALIDATION_METRICS, "elapsed_s")


def objective_metrics() -> tuple[str, ...]:
    """Known objective names: :data:`OBJECTIVE_METRICS` plus any list the training loop exports."""
    try:
        from sasi.train import loop

        extra = tuple(getattr(loop, "VALIDATION_METRICS", ()))
    except Exception:  # noqa: BLE001 - the constant here is the fallback
        extra = ()
    return tuple(dict.fromkeys((*OBJECTIVE_METRICS, *extra)))


def check_objective(metric: str, source: object = None) -> None:
    """The objective must be a metric every evaluation reports (``train_*`` losses are allowed too)."""
    known = objective_metrics()
    if metric in known or metric.startswith("train_"):
        return
    raise SasiError(f"unknown objective metric {metric!r}; known: {', '.join(known)} (or a train_* loss)", source)


def check_trials(trials: int) -> None:
    if trials < 1:
        raise SasiError(f"--trials must be at least 1, got {trials}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_storage(storage: str | os.PathLike, what: str = "--storage") -> Path | None:
    """A local storage folder must be (or become) a writable folder; remote URIs are left to Ray."""
    if "://" in str(storage):
        return None
    path = Path(storage).expanduser()
    if path.exists() and not path.is_dir():
        raise SasiError(f"{what} is a file, not a folder; give a folder path", path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SasiError(f"{what}: cannot create this folder ({exc.strerror or _first_line(exc)})", path) from None
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".sasi-write-probe-"):
            pass
    except OSError as exc:
        raise SasiError(f"{what} is not writable ({exc.strerror or _first_line(exc)}); choose a writable folder",
                        path) from None
    return path


def resolved_tracking_uri(uri: str | None) -> str | None:
    """``uri`` or ``$MLFLOW_TRACKING_URI`` (relative SQLite paths made absolute); None: the default store in
    the storage folder, which :func:`check_storage` covers."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
    return uri or None


def check_tracking(uri: str | None) -> None:
    """A local SQLite MLflow store must sit in a writable folder (else SQLAlchemy retries for minutes)."""
    if not uri:
        return
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if db.is_dir():
            raise SasiError("the MLflow SQLite store is a folder, not a file", db)
        check_storage(db.parent, "the MLflow store's folder")
        if db.exists() and not os.access(db, os.R_OK | os.W_OK):
            raise SasiError("the MLflow SQLite store is not writable", db)
    elif uri.startswith("file:") or ("://" not in uri and uri != "databricks"):
        raise SasiError(f"MLflow tracking URI {uri!r}: use sqlite:///<path>/mlflow.db or an http(s) MLflow server "
                        "(the file store is disabled in MLflow 3)")


def _simulate_hint(root: Path) -> str:
    """``sasi simulate`` command that makes ``root`` when its name looks like ``<recipe>-seed<N>``."""
    from sasi.simulate.recipes import RECIPES

    stem, _, seed = root.name.rpartition("-seed")
    if stem in RECIPES and seed.isdigit():
        return f"; make it with: sasi simulate {root} --recipe {stem} --seed {seed}"
    return f"; make one with: sasi simulate {root} --recipe tiny-v1"


def _tomogram_files(root: Path, name: str, what: str) -> None:
    for file in ("tomogram.mrc", "particles.parquet"):
        if not (root / name / file).is_file():
            raise SasiError(f"{what} tomogram {name!r} has no {file}", root / name)


def _mrc_shape(path: Path) -> tuple[int, int, int]:
    """(z, y, x) from an MRC header, without reading the voxels."""
    import mrcfile

    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            h = mrc.header
            return int(h.nz), int(h.ny), int(h.nx)
    except (OSError, ValueError) as exc:
        raise SasiError(f"not a readable MRC file ({_first_line(exc)})", path) from None


def check_dataset(data: Any, source: object, *, shots: Iterable[int] = (), splits: Iterable[str] = ()) -> None:
    """``data`` (a :class:`~sasi.train.config.DataConfig`): the dataset, its train (and val) tomogram and
    ``splits`` exist, and the train tomogram has at least ``max(shots)`` particles of every class."""
    from sasi.dataset import MANIFEST, load_dataset
    from sasi.fewshot import class_counts
    from sasi.io import read_particles, validate_particles

    if "://" in str(data.dataset):
        return
    root = Path(data.dataset)
    if not (root / MANIFEST).is_file():
        where = "folder not found" if not root.is_dir() else f"no {MANIFEST} in this folder"
        raise SasiError(f"dataset not found ({where}){_simulate_hint(root)}", f"{source}: data.dataset {root}")
    ds = load_dataset(root)
    for split in splits:
        if not ds.splits.get(split):
            raise SasiError(f"the dataset has no {split!r} tomograms; splits: "
                            f"{ {k: len(v) for k, v in ds.splits.items()} }", root / MANIFEST)
        for name in ds.splits[split]:
            _tomogram_files(root, name, split)
    train = data.train_tomogram or (ds.splits.get("train") or [None])[0]
    if not train:
        raise SasiError("the dataset has no 'train' split; set data.train_tomogram", root / MANIFEST)
    _tomogram_files(root, train, "train")
    if data.val_tomogram:
        _tomogram_files(root, data.val_tomogram, "val")
    wanted = max([int(data.shots), *[int(s) for s in shots]])
    if wanted < 1:
        raise SasiError(f"shots must be at least 1, got {wanted}", source)
    truth = read_particles(root / train / "particles.parquet")
    validate_particles(truth, shape_zyx=_mrc_shape(root / train / "tomogram.mrc"), voxel_size=ds.voxel_size,
                       classes=ds.classes, source=root / train / "particles.parquet")
    counts = class_counts(truth)
    short = {c: counts.get(c, 0) for c in ds.classes if counts.get(c, 0) < wanted}
    if short:
        listed = ", ".join(f"{c} {n}" for c, n in short.items())
        raise SasiError(f"{wanted} shots per class, but train tomogram {train!r} has fewer labelled particles "
                        f"of {len(short)} class(es) ({listed}); lower the shots or pick another data.train_tomogram",
                        source)


# ---- the three commands --------------------------------------------------------------------------------------

def train_run(config: Any, source: object, storage: str, tracking_uri: str | None, workers: int,
              gpus_per_worker: float) -> None:
    """``sasi train``: storage, MLflow store, dataset, shots, resources."""
    check_storage(storage)
    check_tracking(tracking_uri)
    if workers < 0:
        raise SasiError(f"--workers must be >= 0, got {workers}")
    if gpus_per_worker < 0:
        raise SasiError(f"--gpus-per-worker must be >= 0, got {gpus_per_worker}")
    check_dataset(config.data, source)


def gpus_per_trial(value: str) -> float | None:
    """``--gpus-per-trial``: a number >= 0, or ``auto`` (None: chosen from memory once Ray is up)."""
    if str(value).strip().lower() == "auto":
        return None
    try:
        gpus = float(value)
    except ValueError:
        raise SasiError(f"--gpus-per-trial must be a number or auto, got {value!r}") from None
    if gpus < 0:
        raise SasiError(f"--gpus-per-trial must be >= 0, got {value}")
    return gpus


def search(space: Any, trials: int, workers_per_trial: int, gpus_per_trial: float, *,
           shots: Iterable[int] = ()) -> None:
    """``sasi tune`` (after :func:`check_storage`): trials, resources, objective, the base config's dataset
    (with enough labelled particles for the largest of ``shots``)."""
    check_trials(trials)
    if workers_per_trial < 1:
        raise SasiError(f"--workers-per-trial must be >= 1, got {workers_per_trial}")
    if gpus_per_trial < 0:
        raise SasiError(f"--gpus-per-trial must be >= 0, got {gpus_per_trial}")
    check_objective(space.metric, f"{space.source}: objective.metric")
    config = space.config()
    shots = [int(n) for n in shots] or [config.data.shots]  # one study per given shot count, else the base's
    config = replace(config, data=replace(config.data, shots=min(shots)))
    for p in space.parameters:
        if p.path == "data.shots":
            shots += [int(v) for v in (p.values if p.type == "choice" else (p.high,))]
    check_dataset(config.data, space.source, shots=shots, splits=("test",))


def suite(parsed: Any, storage: str, quick: bool) -> str:
    """``sasi ablate`` (after :func:`check_storage`): simulates the suite's data if missing (before Ray), then
    checks every variant's dataset settings and the largest shot count. Returns the dataset folder."""
    from sasi.platform.ablate import QUICK, ensure_data

    from sasi.config import from_dict
    from sasi.train.config import SasiConfig

    dataset = ensure_data(parsed, storage)
    for name, tree in parsed.configs(dataset, QUICK if quick else None).items():
        config = from_dict(SasiConfig, tree, f"variant {name!r}")
        data = replace(config.data, shots=min(parsed.shots))  # the grid's shot counts replace the variant's own
        check_dataset(data, f"variant {name!r}", shots=parsed.shots, splits=("test",))
    return dataset
