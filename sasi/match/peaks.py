"""Peaks of score maps: greedy maxima with an exclusion sphere, classes merged, thresholds fitted on validation.

:func:`extract_peaks` is the greedy extraction of pytom-match-pick's ``extract`` (take the highest score,
exclude a sphere of the class radius around it, repeat), run on the local maxima of the map so it stays
fast on large maps. :func:`merge_classes` resolves one particle picked by several classes: the pick with
the highest *relative* score (score / that class's threshold) wins within the larger radius of the two.
:func:`fit_thresholds` picks each class's score threshold that maximises its class-aware F1 (SHREC
rule: a pick counts if it lands in the occupancy mask of a particle of its class) on validation data.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

NEVER = 2.0  # threshold of a class not worth picking (normalised cross-correlation stays below ~1)


def extract_peaks(score: torch.Tensor, radius: float, min_score: float, max_peaks: int = 5000
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(zyx voxels (n, 3), scores (n,))`` of greedy maxima ≥ ``min_score``, ≥ ``radius`` voxels apart."""
    r = max(1, int(round(radius)))
    pooled = score[None, None]
    for kernel in ((2 * r + 1, 1, 1), (1, 2 * r + 1, 1), (1, 1, 2 * r + 1)):  # separable: the cube's max, fast
        pooled = F.max_pool3d(pooled, kernel, stride=1, padding=tuple(k // 2 for k in kernel))
    pooled = pooled[0, 0]
    candidate = (score >= pooled) & (score >= min_score)
    zyx = torch.nonzero(candidate).cpu().numpy()
    values = score[candidate].cpu().numpy()
    order = np.argsort(-values, kind="stable")
    zyx, values = zyx[order], values[order]
    keep = _greedy(zyx.astype(np.float64), np.full(len(zyx), float(radius)), max_peaks)
    return zyx[keep].astype(np.float64), values[keep].astype(np.float64)


def merge_classes(peaks: Mapping[str, tuple[np.ndarray, np.ndarray]], radii_vox: Mapping[str, float],
                  thresholds: Mapping[str, float]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Keep each class's peaks above its threshold, then one pick per particle across classes.

    Returns labels, zyx voxels and scores, ordered by relative score (best first).
    """
    labels, zyx, score, rel = [], [], [], []
    for c, (p, s) in peaks.items():
        above = s >= thresholds[c]
        labels += [c] * int(above.sum())
        zyx.append(p[above])
        score.append(s[above])
        rel.append(s[above] / max(abs(thresholds[c]), 1e-6))
    if not labels:
        return [], np.zeros((0, 3)), np.zeros(0)
    zyx, score, rel = np.concatenate(zyx), np.concatenate(score), np.concatenate(rel)
    order = np.argsort(-rel, kind="stable")
    radius = np.array([radii_vox[c] for c in labels])[order]
    keep = order[_greedy(zyx[order], radius, len(order))]
    return [labels[i] for i in keep], zyx[keep], score[keep]


def fit_thresholds(peaks: Mapping[str, tuple[np.ndarray, np.ndarray]], truth: pa.Table, instances: np.ndarray
                   ) -> dict[str, float]:
    """Per class, the threshold on its (best-first) peaks that maximises class-aware SHREC F1 on one tomogram.

    Truth instance ids are the ``instance`` column if present, else the 1-based row order (as in
    :mod:`sasi.evaluate`). A class never worth picking gets :data:`NEVER` (above its best peak).
    """
    labels = np.asarray(truth.column("label").to_pylist(), dtype=object)
    ids = (truth.column("instance").to_numpy() if "instance" in truth.column_names
           else np.arange(1, truth.num_rows + 1))
    label_of = dict(zip(ids.tolist(), labels.tolist()))
    out = {}
    for c, (zyx, s) in peaks.items():
        n_truth = int((labels == c).sum())
        idx = np.clip(np.rint(zyx).astype(int), 0, np.asarray(instances.shape) - 1)
        hit = instances[tuple(idx.T)] if len(idx) else np.zeros(0, int)
        seen, tp, best_f1, best_k = set(), 0, 0.0, 0
        for k, h in enumerate(hit.tolist(), start=1):
            if h and label_of.get(h) == c and h not in seen:
                seen.add(h)
                tp += 1
            f1 = 2 * tp / (k + n_truth) if k + n_truth else 0.0
            if f1 > best_f1:
                best_f1, best_k = f1, k
        if best_k == 0:
            out[c] = NEVER if not len(s) else max(NEVER, float(s[0]) + 1.0)
        elif best_k < len(s):
            out[c] = float(0.5 * (s[best_k - 1] + s[best_k]))
        else:
            out[c] = float(s[-1])
    return out


def _greedy(points: np.ndarray, radius: np.ndarray, limit: int) -> np.ndarray:
    """Indices kept by greedy suppression of ``points`` (best first): drop those within the larger radius of a kept one."""
    if len(points) == 0:
        return np.zeros(0, int)
    tree = cKDTree(points)
    suppressed = np.zeros(len(points), bool)
    keep = []
    r_max = float(radius.max())
    for i in range(len(points)):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        for j in tree.query_ball_point(points[i], r_max):
            if j > i and np.linalg.norm(points[j] - points[i]) < max(radius[i], radius[j]):
                suppressed[j] = True
    return np.asarray(keep, int)
