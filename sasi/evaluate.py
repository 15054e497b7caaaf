"""Score predicted particles against ground truth: SHREC 2021 localisation, distance matching, CZII F-beta.

Both inputs are particle tables (see :mod:`sasi.io.particles`): ``tomogram, label, x, y, z`` in Å.
:func:`evaluate` returns a :class:`Scores` with per-class and micro precision/recall/F1 under one of
two matching rules, plus the CZII challenge F-beta, which is always computed.

Conventions shared by all rules
-------------------------------
* ``0/0`` is ``0``: precision is 0 without picks, recall is 0 without truth, and F1 (F-beta) is 0
  when precision + recall is 0.
* ``fp = n_pred - tp`` and ``fn = n_truth - tp``, so ``precision = tp / n_pred`` and
  ``recall = tp / n_truth``.
* A class is *present* if it occurs in the truth or in the predictions. Macro F1 and F-beta average
  over present classes only; a class found on one side only scores 0 and still counts.
* Every label on either side needs a radius in ``radii`` (Å), whatever the rule.

Rules
-----
``"shrec"``
    The SHREC 2021 localisation rule reported by the SaSi paper. Each pick is rounded to the nearest
    voxel, clipped to the volume and looked up in its tomogram's instance map (z, y, x; 0 is
    background). A pick whose value is the instance id ``j`` of a truth particle *hits* it. TP is
    the number of distinct truth particles hit, so duplicate hits and background picks both lower
    precision. A map value that belongs to no truth row (e.g. an excluded class) is a miss.
    The micro score is class-agnostic (the paper's localisation F1). A per-class score is
    class-aware: a pick labelled ``c`` counts only if it hits a truth particle labelled ``c``. Hence
    micro TP can exceed the sum of per-class TPs when picks carry the wrong label.
    Truth instance ids come from an optional integer ``instance`` column. Without that column, the
    id is the 1-based row index of the particle within its tomogram, the order
    :func:`sasi.simulate.scene.place_particles` writes.
``"distance"``
    Per tomogram and class, an optimal one-to-one assignment (Hungarian, maximum cardinality, then
    minimum total distance) between picks and truth within ``distance_factor * radii[label]`` Å
    (inclusive). Matched pairs are TP. The micro score sums the counts over classes.

CZII F-beta (``Scores.fbeta``)
------------------------------
This reproduces the CZII "CryoET Object Identification" metric (``topcup.postprocess.metric.score``).
For each class and tomogram, TP is the number of distinct truth particles with at least one pick
within ``distance_factor * radius`` (CZII uses 0.5). Counts are summed over tomograms, F-beta is
computed per class, and the classes are averaged with ``fbeta_weights`` (default 1). The rule is
greedy, not one-to-one, by design: extra picks near an already-found particle are FP, and one pick
near two particles finds both (then ``fp`` can even be negative, as in CZII). It differs from
topcup in three ways. Picks in tomograms that have no truth count as FP, where topcup drops them.
The mean runs over present classes, where topcup uses every class in its weight table. Duplicate
truth rows are kept, where topcup drops them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from rich.table import Table
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from sasi.errors import SasiError
from sasi.io.particles import particles_to_voxels

RULES = ("shrec", "distance")
MICRO_LABEL = "all"


@dataclass(frozen=True)
class ClassScore:
    """Detection counts and rates for one class (or all classes, for the micro score)."""

    label: str
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float

    @classmethod
    def from_counts(cls, label: str, tp: int, n_pred: int, n_truth: int) -> ClassScore:
        """Build a score from true positives and the numbers of picks and truth particles."""
        precision, recall = _ratio(tp, n_pred), _ratio(tp, n_truth)
        return cls(label, int(tp), int(n_pred - tp), int(n_truth - tp), precision, recall,
                   f_beta(precision, recall, 1.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scores:
    """Result of :func:`evaluate`.

    Attributes
    ----------
    per_class : dict[str, ClassScore]
        Scores of every present class, sorted by label.
    micro : ClassScore
        All classes pooled (class-agnostic for ``rule="shrec"``), labelled ``"all"``.
    macro_f1 : float
        Mean per-class F1 over present classes.
    fbeta : float
        CZII weighted F-beta.
    rule : str
        Matching rule used for ``per_class`` and ``micro``.
    n_truth, n_pred : int
        Numbers of truth particles and picks.
    fbeta_per_class : dict[str, float]
        CZII F-beta of every present class.
    """

    per_class: dict[str, ClassScore]
    micro: ClassScore
    macro_f1: float
    fbeta: float
    rule: str
    n_truth: int
    n_pred: int
    fbeta_per_class: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return plain nested dicts of Python numbers, ready for :func:`json.dumps`."""
        return asdict(self)


@dataclass(frozen=True)
class _Points:
    tomogram: np.ndarray  # (n,) str
    label: np.ndarray  # (n,) str
    xyz: np.ndarray  # (n, 3) Å

    @classmethod
    def of(cls, table: pa.Table, source: str) -> _Points:
        missing = [c for c in ("tomogram", "label", "x", "y", "z") if c not in table.column_names]
        if missing:
            raise SasiError(f"particle table lacks column(s) {missing}", source)
        xyz = np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in "xyz"], axis=1)
        xyz = xyz.astype(np.float64).reshape(-1, 3)
        if not np.isfinite(xyz).all():
            raise SasiError("coordinates contain NaN/inf or nulls", source)
        return cls(_strings(table, "tomogram"), _strings(table, "label"), xyz)

    def __len__(self) -> int:
        return len(self.xyz)


def evaluate(truth: pa.Table, pred: pa.Table, *, rule: str = "shrec", voxel_size: float,
             radii: Mapping[str, float], instance_maps: Mapping[str, np.ndarray] | None = None,
             distance_factor: float = 0.5, fbeta_weights: Mapping[str, float] | None = None,
             beta: float = 4.0) -> Scores:
    """Score predicted particles against ground truth.

    Parameters
    ----------
    truth, pred : pyarrow.Table
        Particle tables (Å). ``truth`` may carry an integer ``instance`` column (``rule="shrec"``).
    rule : {"shrec", "distance"}
        Matching rule for ``per_class``/``micro`` (see the module docstring).
    voxel_size : float
        Å per voxel; used to index the instance maps.
    radii : mapping of str to float
        Particle radius in Å for every label on either side.
    instance_maps : mapping of str to numpy.ndarray, optional
        Tomogram name to integer instance map (z, y, x). Needed by ``rule="shrec"`` for every
        tomogram that appears in ``truth`` or ``pred``.
    distance_factor : float
        Matching radius as a fraction of the particle radius, for ``"distance"`` and F-beta.
    fbeta_weights : mapping of str to float, optional
        Per-class F-beta weights; missing classes weigh 1.
    beta : float
        F-beta's beta (CZII: 4).

    Returns
    -------
    Scores

    Raises
    ------
    SasiError
        On an unknown rule or label, a missing or malformed instance map, or bad instance ids.
    """
    if rule not in RULES:
        raise SasiError(f"unknown evaluation rule {rule!r}; use one of {RULES}")
    if voxel_size <= 0 or distance_factor <= 0:
        raise SasiError(f"voxel size and distance factor must be positive, got {voxel_size}, {distance_factor}")
    t, p = _Points.of(truth, "truth"), _Points.of(pred, "predictions")
    _check_radii(t, "truth", radii)
    _check_radii(p, "predictions", radii)
    classes = sorted(str(c) for c in set(t.label) | set(p.label))
    if rule == "shrec":
        hits = _shrec_hits(t, _instance_ids(truth, t), p, particles_to_voxels(pred, voxel_size), instance_maps)
        per_class = {c: _shrec_class(t, p, hits, c) for c in classes}
        micro = ClassScore.from_counts(MICRO_LABEL, _n_unique_hits(hits), len(p), len(t))
    else:
        per_class = {c: ClassScore.from_counts(c, *_class_counts(t, p, c, _hungarian_tp, distance_factor * radii[c]))
                     for c in classes}
        micro = _pooled(per_class.values())
    fbetas = {c: _fbeta_class(t, p, c, distance_factor * radii[c], beta) for c in classes}
    return Scores(per_class, micro, _mean([s.f1 for s in per_class.values()]),
                  _weighted_fbeta(fbetas, fbeta_weights or {}), rule, len(t), len(p), fbetas)


def scores_table(scores: Scores) -> Table:
    """Render :class:`Scores` as a :class:`rich.table.Table`: one row per class plus the micro row."""
    table = Table(title=f"Detection scores (rule: {scores.rule})",
                  caption=f"macro F1 {scores.macro_f1:.3f} · CZII F-beta {scores.fbeta:.3f} · "
                          f"{scores.n_pred} picks, {scores.n_truth} truth")
    for name in ("class", "TP", "FP", "FN", "precision", "recall", "F1", "F-beta"):
        table.add_column(name, justify="left" if name == "class" else "right")
    for s in scores.per_class.values():
        table.add_row(*_row(s, scores.fbeta_per_class.get(s.label)))
    table.add_section()
    table.add_row(*_row(scores.micro, None), style="bold")
    return table


def f_beta(precision: float, recall: float, beta: float) -> float:
    """``(1 + b²) P R / (b² P + R)``, or 0 when ``P + R`` is 0."""
    if precision + recall <= 0:
        return 0.0
    b2 = beta * beta
    return float((1 + b2) * precision * recall / (b2 * precision + recall))


def _ratio(num: int, den: int) -> float:
    return float(num / den) if den > 0 else 0.0


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else 0.0


def _strings(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray([str(v) for v in table.column(name).to_pylist()], dtype=str)


def _check_radii(points: _Points, source: str, radii: Mapping[str, float]) -> None:
    unknown = sorted(set(points.label) - set(radii))
    if unknown:
        raise SasiError(f"no radius for label(s) {unknown}; radii are known for {sorted(radii)}", source)


def _row(s: ClassScore, fbeta: float | None) -> list[str]:
    return [s.label, str(s.tp), str(s.fp), str(s.fn), f"{s.precision:.3f}", f"{s.recall:.3f}",
            f"{s.f1:.3f}", "" if fbeta is None else f"{fbeta:.3f}"]


# ---- SHREC rule -------------------------------------------------------------------------------

def _instance_ids(table: pa.Table, t: _Points) -> np.ndarray:
    """Instance id of every truth row: the ``instance`` column, else the 1-based row index per tomogram."""
    if "instance" in table.column_names:
        column = table.column("instance")
        if column.null_count or not pa.types.is_integer(column.type):
            raise SasiError(f"'instance' column must be integers without nulls, got {column.type}", "truth")
        ids = column.to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        ids = np.zeros(len(t), np.int64)
        for tomo in np.unique(t.tomogram):
            rows = t.tomogram == tomo
            ids[rows] = np.arange(1, rows.sum() + 1)
    for tomo in np.unique(t.tomogram):
        own = ids[t.tomogram == tomo]
        if (own <= 0).any() or len(np.unique(own)) != len(own):
            raise SasiError(f"instance ids in tomogram {tomo!r} must be positive and unique", "truth")
    return ids


def _shrec_hits(t: _Points, ids: np.ndarray, p: _Points, zyx: np.ndarray,
                maps: Mapping[str, np.ndarray] | None) -> np.ndarray:
    """Truth row hit by every pick, or -1 for a miss."""
    maps = maps or {}
    missing = sorted((set(t.tomogram) | set(p.tomogram)) - set(maps))
    if missing:
        raise SasiError(f"rule 'shrec' needs an instance map for every tomogram; missing {missing}")
    hits = np.full(len(p), -1, np.int64)
    for tomo in np.unique(p.tomogram):
        volume = _instance_map(maps[tomo], tomo)
        picks = np.flatnonzero(p.tomogram == tomo)
        voxels = np.clip(np.rint(zyx[picks]).astype(np.int64), 0, np.asarray(volume.shape) - 1)
        rows = np.flatnonzero(t.tomogram == tomo)
        hits[picks] = _rows_of_ids(volume[tuple(voxels.T)], ids[rows], rows)
    return hits


def _instance_map(volume: np.ndarray, tomo: str) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 3 or not np.issubdtype(volume.dtype, np.integer):
        raise SasiError(f"instance map of tomogram {tomo!r} must be a 3-D integer array, "
                        f"got {volume.ndim}-D {volume.dtype}")
    return volume


def _rows_of_ids(values: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Map instance-map values to truth rows (-1 where no truth row has that id)."""
    if len(ids) == 0:
        return np.full(len(values), -1, np.int64)
    order = np.argsort(ids)
    pos = np.searchsorted(ids[order], values).clip(max=len(ids) - 1)
    found = (values > 0) & (ids[order][pos] == values)
    return np.where(found, rows[order][pos], -1)


def _n_unique_hits(hits: np.ndarray) -> int:
    return len(np.unique(hits[hits >= 0]))


def _shrec_class(t: _Points, p: _Points, hits: np.ndarray, label: str) -> ClassScore:
    own = hits[p.label == label]
    own = own[own >= 0]
    tp = _n_unique_hits(own[t.label[own] == label])
    return ClassScore.from_counts(label, tp, int((p.label == label).sum()), int((t.label == label).sum()))


# ---- distance rule and CZII F-beta ----------------------------------------------------------

_TpCounter = Callable[[np.ndarray, np.ndarray, float], int]  # (truth xyz, pick xyz, radius) -> TP


def _groups(t: _Points, p: _Points, label: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Truth and pick coordinates of one class, per tomogram that has both."""
    t_in, p_in = t.label == label, p.label == label
    for tomo in set(t.tomogram[t_in]) & set(p.tomogram[p_in]):
        yield t.xyz[t_in & (t.tomogram == tomo)], p.xyz[p_in & (p.tomogram == tomo)]


def _class_counts(t: _Points, p: _Points, label: str, count: _TpCounter, radius: float
                  ) -> tuple[int, int, int]:
    """``(tp, n_pred, n_truth)`` of one class, TPs summed over tomograms."""
    tp = sum(count(tx, px, radius) for tx, px in _groups(t, p, label))
    return tp, int((p.label == label).sum()), int((t.label == label).sum())


def _pooled(scores: Iterable[ClassScore]) -> ClassScore:
    tp = n_pred = n_truth = 0
    for s in scores:
        tp, n_pred, n_truth = tp + s.tp, n_pred + s.tp + s.fp, n_truth + s.tp + s.fn
    return ClassScore.from_counts(MICRO_LABEL, tp, n_pred, n_truth)


def _hungarian_tp(truth_xyz: np.ndarray, pred_xyz: np.ndarray, radius: float) -> int:
    """Size of the optimal one-to-one matching with pair distance ``<= radius``."""
    pairs = cKDTree(pred_xyz).sparse_distance_matrix(cKDTree(truth_xyz), radius, output_type="ndarray")
    if len(pairs) == 0:
        return 0
    rows, r = np.unique(pairs["i"], return_inverse=True)
    cols, c = np.unique(pairs["j"], return_inverse=True)
    forbidden = radius * (min(len(rows), len(cols)) + 1) + 1.0  # dearer than any set of allowed pairs
    cost = np.full((len(rows), len(cols)), forbidden)
    cost[r, c] = pairs["v"]
    chosen = cost[linear_sum_assignment(cost)]
    return int((chosen < forbidden).sum())


def _czii_tp(truth_xyz: np.ndarray, pred_xyz: np.ndarray, radius: float) -> int:
    """Number of truth particles with at least one pick within ``radius`` (CZII rule)."""
    return int((cKDTree(pred_xyz).query_ball_point(truth_xyz, radius, return_length=True) > 0).sum())


def _fbeta_class(t: _Points, p: _Points, label: str, radius: float, beta: float) -> float:
    tp, n_pred, n_truth = _class_counts(t, p, label, _czii_tp, radius)
    return f_beta(_ratio(tp, n_pred), _ratio(tp, n_truth), beta)


def _weighted_fbeta(fbetas: Mapping[str, float], weights: Mapping[str, float]) -> float:
    w = np.array([float(weights.get(c, 1.0)) for c in fbetas])
    if (w < 0).any():
        raise SasiError(f"F-beta weights must be non-negative, got {dict(weights)}")
    if w.sum() <= 0:
        return 0.0
    return float(np.average(list(fbetas.values()), weights=w))
