"""Score a trained checkpoint on the test tomograms and write the files a trial logs to MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from sasi.dataset import load_dataset, score_on_dataset
from sasi.detect import detect
from sasi.io import write_particles
from sasi.train.loop import load_checkpoint


@dataclass
class TestReport:
    metrics: dict[str, float]
    files: list[Path] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


def evaluate_checkpoint(folder: str | Path, out: str | Path, split: str = "test") -> TestReport:
    """Detect on every tomogram of ``split``; SHREC F1 (micro + per class), picks as Parquet/STAR, PNGs."""
    from sasi.plots import slice_with_particles
    from sasi.platform.figures import per_class_f1, training_curves

    net, config, state = load_checkpoint(folder)
    dataset = load_dataset(config.data.dataset)
    names = dataset.names(split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    d = config.detect
    tables, first = [], None
    for name in names:
        tomo = dataset.tomogram(name)
        found = detect(net.backbone, tomo.data, state["classes"], dataset.voxel_size, name, tile=d.tile,
                       margin=d.margin, connectivity=d.connectivity, min_size=d.min_size)
        tables.append(found.particles)
        first = first or (tomo, found.particles)
    picks = pa.concat_tables(tables)
    scores = score_on_dataset(dataset, picks, names, rule="shrec")
    metrics = {f"{split}_f1": scores.micro.f1, f"{split}_precision": scores.micro.precision,
               f"{split}_recall": scores.micro.recall, f"{split}_macro_f1": scores.macro_f1,
               f"{split}_picks": float(picks.num_rows)}
    metrics.update({f"{split}_f1.{c}": s.f1 for c, s in scores.per_class.items()})
    tomo, tomo_picks = first
    files = [write_particles(picks, out / "predictions.parquet"),
             write_particles(picks, out / "predictions.star", voxel_size=dataset.voxel_size,
                             shape_zyx=tomo.shape),
             slice_with_particles(tomo.data, dataset.particles(names[0]), dataset.voxel_size, out / "slice.png",
                                  pred=tomo_picks, instances=dataset.instances(names[0]),
                                  title=f"{names[0]}: truth outlined, x picks"),
             training_curves(state["history"], out / "training_curves.png", title=config.name),
             per_class_f1({c: s.f1 for c, s in scores.per_class.items()}, out / "per_class_f1.png",
                          title=f"{config.name}: {split} F1 per class", overall=scores.micro.f1)]
    return TestReport(metrics, files, state["history"])
