"""Distance rules: one-to-one (Hungarian) matching within a radius, and the CZII F-beta's greedy rule."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from sasi.errors import SasiError
from sasi.evaluate.points import Points
from sasi.evaluate.scores import MICRO_LABEL, ClassScore, f_beta, ratio

def distance_class_score(t: Points, p: Points, label: str, radius: float) -> ClassScore:
    """One class: one-to-one matching within ``radius`` Å, per tomogram."""
    tp = sum(hungarian_tp(tx, px, np.full(len(tx), radius)) for tx, px, _ in _groups(t, p, label))
    return ClassScore.from_counts(label, tp, int((p.label == label).sum()), int((t.label == label).sum()))


def localisation_distance_f1(t: Points, p: Points, radii: Mapping[str, float], factor: float) -> float:
    """Class-agnostic one-to-one matching within ``factor`` × each truth particle's radius."""
    tp = 0
    for tomo in set(t.tomogram) & set(p.tomogram):
        own = t.tomogram == tomo
        reach = factor * np.array([radii[c] for c in t.label[own]])
        tp += hungarian_tp(t.xyz[own], p.xyz[p.tomogram == tomo], reach)
    return ClassScore.from_counts(MICRO_LABEL, tp, len(p), len(t)).f1


def pooled(scores: Iterable[ClassScore]) -> ClassScore:
    tp = n_pred = n_truth = 0
    for s in scores:
        tp, n_pred, n_truth = tp + s.tp, n_pred + s.tp + s.fp, n_truth + s.tp + s.fn
    return ClassScore.from_counts(MICRO_LABEL, tp, n_pred, n_truth)


def hungarian_tp(truth_xyz: np.ndarray, pred_xyz: np.ndarray, reach: np.ndarray) -> int:
    """Size of the optimal one-to-one matching with pair distance ``<= reach`` of the truth particle."""
    if len(truth_xyz) == 0 or len(pred_xyz) == 0:
        return 0
    pairs = cKDTree(pred_xyz).sparse_distance_matrix(cKDTree(truth_xyz), float(reach.max()), output_type="ndarray")
    pairs = pairs[pairs["v"] <= reach[pairs["j"]]]
    if len(pairs) == 0:
        return 0
    rows, r = np.unique(pairs["i"], return_inverse=True)
    cols, c = np.unique(pairs["j"], return_inverse=True)
    forbidden = float(reach.max()) * (min(len(rows), len(cols)) + 1) + 1.0  # dearer than any set of allowed pairs
    cost = np.full((len(rows), len(cols)), forbidden)
    cost[r, c] = pairs["v"]
    chosen = cost[linear_sum_assignment(cost)]
    return int((chosen < forbidden).sum())


def czii_fbeta(t: Points, p: Points, label: str, radius: float, beta: float) -> float:
    """CZII F-beta of one class: TP = truth particles with at least one pick within ``radius``."""
    tp = sum(int((cKDTree(px).query_ball_point(tx, radius, return_length=True) > 0).sum())
             for tx, px, _ in _groups(t, p, label))
    return f_beta(ratio(tp, int((p.label == label).sum())), ratio(tp, int((t.label == label).sum())), beta)


def weighted_fbeta(fbetas: Mapping[str, float], weights: Mapping[str, float]) -> float:
    w = np.array([float(weights.get(c, 1.0)) for c in fbetas])
    if (w < 0).any():
        raise SasiError(f"F-beta weights must be non-negative, got {dict(weights)}")
    if w.sum() <= 0:
        return 0.0
    return float(np.average(list(fbetas.values()), weights=w))


def _groups(t: Points, p: Points, label: str) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
    """Truth and pick coordinates of one class, per tomogram that has both."""
    t_in, p_in = t.label == label, p.label == label
    for tomo in set(t.tomogram[t_in]) & set(p.tomogram[p_in]):
        yield t.xyz[t_in & (t.tomogram == tomo)], p.xyz[p_in & (p.tomogram == tomo)], tomo
