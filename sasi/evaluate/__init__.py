"""Score predicted particles against ground truth: SHREC 2021 localisation and class-aware F1, distance
matching, CZII F-beta, and what every false pick is.

Both inputs are particle tables (see :mod:`sasi.io.particles`): ``tomogram, label, x, y, z`` in Å.
:func:`evaluate` returns a :class:`Scores`.

Conventions shared by all rules
-------------------------------
* ``0/0`` is ``0``: precision is 0 without picks, recall is 0 without truth, and F1 (F-beta) is 0
  when precision + recall is 0.
* ``fp = n_pred - tp`` and ``fn = n_truth - tp``, so ``precision = tp / n_pred`` and
  ``recall = tp / n_truth``. Every truth particle counts, in tomograms without picks too.
* A class is *present* if it occurs in the truth or in the predictions. Macro F1 and F-beta average
  over present classes only; a class found on one side only scores 0 and still counts.
* Every label on either side needs a radius in ``radii`` (Å), whatever the rule.

Rules
-----
``"shrec"`` (:mod:`sasi.evaluate.shrec`)
    The SHREC 2021 rule. Each pick is rounded to the nearest voxel and looked up in its tomogram's
    instance map (z, y, x; 0 is background); a pick whose voxel lies outside the map is reported as
    *outside* and hits nothing. The first pick (file order) on a truth particle claims it.
    ``micro`` is the class-agnostic localisation score (the SaSi paper's F1: TP = claimed particles);
    ``class_aware`` and ``per_class`` count a particle only when its first pick carries its class, so
    a second pick on a claimed particle is a duplicate FP and a wrong class is an FP and an FN.
    ``breakdown`` says what every pick is. Truth instance ids come from an optional integer
    ``instance`` column, else the 1-based row index of the particle within its tomogram (the order
    :func:`sasi.simulate.scene.place_particles` writes).
``"distance"`` (:mod:`sasi.evaluate.matching`)
    Per tomogram and class, an optimal one-to-one assignment (Hungarian, maximum cardinality, then
    minimum total distance) between picks and truth within ``distance_factor * radii[label]`` Å
    (inclusive). Matched pairs are TP. The micro score sums the counts over classes.

Whatever the rule, ``distance_f1`` is the class-agnostic one-to-one score within ``distance_factor`` ×
the truth particle's radius: it is close to the SHREC localisation F1 only when picks sit at centres.

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

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from sasi.errors import SasiError
from sasi.evaluate.matching import czii_fbeta, distance_class_score, localisation_distance_f1, pooled, weighted_fbeta
from sasi.evaluate.points import Points
from sasi.evaluate.scores import MICRO_LABEL, ClassScore, PickBreakdown, Scores, f_beta, scores_table
from sasi.evaluate.shrec import score_shrec
from sasi.io.particles import particles_to_voxels

__all__ = ["RULES", "MICRO_LABEL", "ClassScore", "PickBreakdown", "Scores", "evaluate", "f_beta", "scores_table"]

RULES = ("shrec", "distance")


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
        Matching radius as a fraction of the particle radius, for ``"distance"``, ``distance_f1`` and F-beta.
    fbeta_weights : mapping of str to float, optional
        Per-class F-beta weights; missing classes weigh 1.
    beta : float
        F-beta's beta (CZII: 4).

    Raises
    ------
    SasiError
        On an unknown rule or label, a missing or malformed instance map, or bad instance ids.
    """
    if rule not in RULES:
        raise SasiError(f"unknown evaluation rule {rule!r}; use one of {RULES}")
    if voxel_size <= 0 or distance_factor <= 0:
        raise SasiError(f"voxel size and distance factor must be positive, got {voxel_size}, {distance_factor}")
    t, p = Points.of(truth, "truth"), Points.of(pred, "predictions")
    t.check_radii("truth", radii)
    p.check_radii("predictions", radii)
    classes = sorted(str(c) for c in set(t.label) | set(p.label))
    class_aware = breakdown = None
    if rule == "shrec":
        result = score_shrec(t, truth, p, particles_to_voxels(pred, voxel_size), instance_maps, classes)
        per_class, micro = result.per_class, result.localisation
        class_aware, breakdown = result.class_aware, result.breakdown
    else:
        per_class = {c: distance_class_score(t, p, c, distance_factor * radii[c]) for c in classes}
        micro = pooled(per_class.values())
    fbetas = {c: czii_fbeta(t, p, c, distance_factor * radii[c], beta) for c in classes}
    return Scores(per_class, micro, float(np.mean([s.f1 for s in per_class.values()])) if per_class else 0.0,
                  weighted_fbeta(fbetas, fbeta_weights or {}), rule, len(t), len(p), fbetas, class_aware, breakdown,
                  localisation_distance_f1(t, p, radii, distance_factor), t.counts(classes), p.counts(classes))
