"""A dataset on disk: tomograms with ground truth, class names and radii, and train/val/test splits.

Layout (written by ``sasi simulate``; users can build the same for their own data)::

    ROOT/dataset.yaml                   classes, radii (Å), voxel size, splits, provenance
    ROOT/<tomo>/tomogram.mrc            the tomogram
    ROOT/<tomo>/particles.parquet       ground-truth particle table
    ROOT/<tomo>/labels.mrc              class map (0 = background)        [optional]
    ROOT/<tomo>/occupancy_mask.mrc      instance map (SHREC 2021 layout)  [optional]
    ROOT/<tomo>/particle_locations.txt  SHREC 2021 coordinates            [optional]
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from sasi.config import load_yaml
from sasi.errors import SasiError
from sasi.io import Tomogram, read_mrc, read_particles, validate_particles

MANIFEST = "dataset.yaml"


@dataclass
class Dataset:
    root: Path
    classes: list[str]
    radii: dict[str, float]  # Å, equivalent-sphere radius per class
    voxel_size: float
    splits: dict[str, list[str]]
    meta: dict[str, Any] = field(default_factory=dict)

    def names(self, split: str) -> list[str]:
        if split not in self.splits:
            raise SasiError(f"no split {split!r}; available: {sorted(self.splits)}", self.root / MANIFEST)
        return self.splits[split]

    def tomogram(self, name: str) -> Tomogram:
        return read_mrc(self.root / name / "tomogram.mrc", expect_voxel_size=self.voxel_size)

    def particles(self, name: str, shape_zyx: tuple[int, int, int] | None = None) -> pa.Table:
        path = self.root / name / "particles.parquet"
        table = read_particles(path)
        if shape_zyx is not None:
            validate_particles(table, shape_zyx=shape_zyx, voxel_size=self.voxel_size,
                               classes=self.classes, source=path)
        return table

    def instances(self, name: str) -> np.ndarray:
        return read_mrc(self.root / name / "occupancy_mask.mrc").data.astype(np.int32)

    def save(self) -> Path:
        path = self.root / MANIFEST
        body = {"classes": self.classes, "radii": self.radii, "voxel_size": self.voxel_size,
                "splits": self.splits, **self.meta}
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return path


@contextmanager
def writing_dataset(out: str | Path) -> Iterator[Path]:
    """Write a dataset all or nothing: yields a staging folder beside ``out`` (missing or empty) that becomes
    ``out`` when the block ends without error; after an error nothing is left."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SasiError("output folder exists and is not empty", out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staging
        if out.exists():
            out.rmdir()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_dataset(root: str | Path) -> Dataset:
    root = Path(root)
    manifest = root / MANIFEST
    body = load_yaml(manifest)
    try:
        return Dataset(root=root, classes=list(body.pop("classes")), radii=dict(body.pop("radii")),
                       voxel_size=float(body.pop("voxel_size")), splits=dict(body.pop("splits")), meta=body)
    except (KeyError, TypeError, AttributeError) as exc:
        raise SasiError(f"dataset manifest is missing or has a bad field ({exc})", manifest) from None


def score_on_dataset(dataset: Dataset, pred: pa.Table, names: list[str], *, rule: str = "shrec"):
    """Evaluate picks on the named tomograms of a dataset (truth, radii and instance maps from disk)."""
    from sasi.evaluate import evaluate

    truth = pa.concat_tables([dataset.particles(n) for n in names])
    maps = {n: dataset.instances(n) for n in names} if rule == "shrec" else None
    tomos = set(pred.column("tomogram").to_pylist()) - set(names)
    if tomos:
        raise SasiError(f"predictions name tomogram(s) {sorted(tomos)} outside {names}")
    return evaluate(truth, pred, rule=rule, voxel_size=dataset.voxel_size, radii=dataset.radii, instance_maps=maps)
