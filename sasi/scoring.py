"""Detect → score, one path for training, the CLI, the platform and the benchmarks.

:func:`detect_tomograms` finds particles in a split's tomograms, :func:`choose_min_score` picks the score
cut-off that maximises class-aware F1 on the validation tomogram, and :func:`score_picks` turns picks into
one :class:`SplitScores` whose field names say what they are (pooled over the split's particles, or a mean
over its tomograms). :func:`sasi.train.checkpoint.score_checkpoint` does all of it for a saved checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from sasi.dataset import Dataset, score_on_dataset
from sasi.detect import DetectConfig, ParticleGeometry, ShapeClassifier, detect
from sasi.evaluate.points import Points
from sasi.evaluate.scores import ClassScore
from sasi.evaluate.shrec import instance_ids, pick_hits
from sasi.io.particles import empty_particles, particles_to_voxels


@dataclass(frozen=True)
class SplitScores:
    """Scores of one split's picks (SHREC rule). *pooled*: counts summed over the split's particles;
    *mean*: the mean of per-tomogram F1s (the paper's T6−9 columns)."""

    split: str
    tomograms: tuple[str, ...]
    min_score: float
    class_f1_pooled: float
    localisation_f1_pooled: float
    localisation_precision_pooled: float
    localisation_recall_pooled: float
    distance_f1_pooled: float
    class_f1_macro: float
    class_f1_mean: float
    localisation_f1_mean: float
    fbeta: float
    picks: int
    truth: int
    picks_per_truth: float
    duplicate_fraction: float
    wrong_class_fraction: float
    background_fraction: float
    outside_fraction: float
    class_f1_per_class: dict[str, float] = field(default_factory=dict)
    picks_per_class: dict[str, int] = field(default_factory=dict)
    truth_per_class: dict[str, int] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Flat ``<split>_<name>`` floats for MLflow and Tune: ``<split>_class_f1`` is the headline."""
        s = self.split
        out = {f"{s}_class_f1": self.class_f1_pooled, f"{s}_localisation_f1": self.localisation_f1_pooled,
               f"{s}_precision": self.localisation_precision_pooled, f"{s}_recall": self.localisation_recall_pooled,
               f"{s}_distance_f1": self.distance_f1_pooled, f"{s}_class_f1_macro": self.class_f1_macro,
               f"{s}_class_f1_mean": self.class_f1_mean, f"{s}_localisation_f1_mean": self.localisation_f1_mean,
               f"{s}_fbeta": self.fbeta, f"{s}_picks": float(self.picks), f"{s}_picks_per_truth": self.picks_per_truth,
               f"{s}_duplicate_fraction": self.duplicate_fraction, f"{s}_wrong_class_fraction": self.wrong_class_fraction,
               f"{s}_background_fraction": self.background_fraction, f"{s}_outside_fraction": self.outside_fraction,
               f"{s}_min_score": self.min_score}
        out.update({f"{s}_class_f1.{c}": v for c, v in self.class_f1_per_class.items()})
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def geometry_of(dataset: Dataset, label_radius_scale: float) -> ParticleGeometry:
    return ParticleGeometry(list(dataset.classes), dataset.voxel_size, dict(dataset.radii), label_radius_scale)


def detect_tomograms(model: torch.nn.Module, dataset: Dataset, names: list[str], geometry: ParticleGeometry,
                     config: DetectConfig, *, device: torch.device | str = "cpu", amp: bool = False,
                     min_score: float = 0.0, shape: ShapeClassifier | None = None) -> pa.Table:
    """Picks of every named tomogram, concatenated (each tomogram's best first); classes from ``shape`` if given."""
    tables = [detect(model, dataset.tomogram(n).data, geometry, n, config=config, min_score=min_score,
                     device=device, amp=amp, shape=shape).particles for n in names]
    return pa.concat_tables(tables) if tables else empty_particles()


def above(picks: pa.Table, min_score: float) -> pa.Table:
    """The picks scoring at least ``min_score`` (all of them without a score column)."""
    if "score" not in picks.column_names or min_score <= 0:
        return picks
    return picks.filter(pc.greater_equal(picks.column("score"), min_score))


def score_picks(dataset: Dataset, picks: pa.Table, names: list[str], split: str, min_score: float = 0.0
                ) -> SplitScores:
    """Score picks (≥ ``min_score``) on the named tomograms; every truth particle counts, picked or not."""
    picks = above(picks, min_score)
    pooled = score_on_dataset(dataset, picks, names)
    per_tomogram = [score_on_dataset(dataset, picks.filter(pc.equal(picks.column("tomogram"), n)), [n])
                    for n in names]
    fractions = pooled.breakdown.fractions()
    return SplitScores(
        split, tuple(names), float(min_score), pooled.class_aware.f1, pooled.micro.f1, pooled.micro.precision,
        pooled.micro.recall, pooled.distance_f1, pooled.macro_f1,
        float(np.mean([s.class_aware.f1 for s in per_tomogram])) if names else 0.0,
        float(np.mean([s.micro.f1 for s in per_tomogram])) if names else 0.0,
        pooled.fbeta, pooled.n_pred, pooled.n_truth, pooled.picks_per_truth, fractions["duplicate"],
        fractions["wrong_class"], fractions["background"], fractions["outside"],
        {c: s.f1 for c, s in pooled.per_class.items()}, pooled.n_pred_per_class, pooled.n_truth_per_class)


def choose_min_score(dataset: Dataset, picks: pa.Table, names: list[str], candidates: int = 64) -> float:
    """The score cut-off (among the picks' own score quantiles) with the best pooled class-aware F1 on ``names``.

    Use it on the validation tomogram only. Ties go to the lowest cut-off; without scored picks it is 0.
    """
    if picks.num_rows == 0 or "score" not in picks.column_names:
        return 0.0
    truth = pa.concat_tables([dataset.particles(n) for n in names])
    t, p = Points.of(truth, "truth"), Points.of(picks, "predictions")
    hits = pick_hits(t, instance_ids(truth, t), p, particles_to_voxels(picks, dataset.voxel_size),
                     {n: dataset.instances(n) for n in names})
    right = np.zeros(len(p), bool)
    right[hits >= 0] = p.label[hits >= 0] == t.label[hits[hits >= 0]]
    score = picks.column("score").to_numpy()
    best, best_f1 = 0.0, -1.0
    for cut in np.unique(np.quantile(score, np.linspace(0.0, 0.98, candidates))):
        keep = score >= cut
        index = np.flatnonzero(keep & (hits >= 0))
        _, first = np.unique(hits[index], return_index=True)
        f1 = ClassScore.from_counts("all", int(right[index[first]].sum()), int(keep.sum()), len(t)).f1
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(cut), f1
    return best
