"""Score a trained checkpoint on the test tomograms and write the files a trial logs to MLflow."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from sasi.dataset import load_dataset
from sasi.io import write_particles
from sasi.train.checkpoint import load_checkpoint, score_checkpoint


@dataclass
class TestReport:
    metrics: dict[str, float]
    files: list[Path] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


def evaluate_checkpoint(folder: str | Path, out: str | Path, split: str = "test",
                        device: torch.device | str = "auto") -> TestReport:
    """Detect on every tomogram of ``split`` (on the GPU when there is one) and score it: class-aware and
    localisation F1, the false-pick breakdown, per-class F1; picks as Parquet/STAR and PNGs in ``out``."""
    from sasi.platform.figures import per_class_f1, training_curves
    from sasi.plots import slice_with_particles

    _, config, state = load_checkpoint(folder)
    dataset = load_dataset(config.data.dataset)
    scores, picks = score_checkpoint(folder, dataset, split, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    first = scores.tomograms[0]
    tomo = dataset.tomogram(first)
    first_picks = picks.filter(picks.column("tomogram").to_numpy(zero_copy_only=False) == first)
    files = [write_particles(picks, out / "predictions.parquet"),
             write_particles(picks, out / "predictions.star", voxel_size=dataset.voxel_size, shape_zyx=tomo.shape),
             slice_with_particles(tomo.data, dataset.particles(first), dataset.voxel_size, out / "slice.png",
                                  pred=first_picks, instances=dataset.instances(first),
                                  title=f"{first}: truth outlined, x picks"),
             training_curves(state["history"], out / "training_curves.png", title=config.name),
             per_class_f1(scores.class_f1_per_class, out / "per_class_f1.png",
                          title=f"{config.name}: {split} class-aware F1 per class", overall=scores.class_f1_pooled)]
    return TestReport(scores.metrics(), files, state["history"])
