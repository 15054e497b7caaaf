"""Hand-computed checks of sasi.evaluate, plus an oracle test against the CZII metric (topcup)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from rich.console import Console

from sasi.errors import SasiError
from sasi.evaluate import ClassScore, PickBreakdown, evaluate, f_beta, scores_table
from sasi.io.particles import empty_particles, make_particles

VOXEL = 10.0  # Å
RADII = {"a": 40.0, "b": 40.0, "c": 40.0}  # distance threshold 20 Å with the default factor 0.5
SHAPE = (20, 20, 20)
# z, y, x voxel centres of instances 1, 2, 3 in the test instance map (cubes of side 5)
CENTRES = np.array([[5, 5, 5], [5, 5, 14], [14, 14, 14]])


def particles(rows: list[tuple[str, str, float, float, float]]) -> pa.Table:
    """Table from ``(tomogram, label, x, y, z)`` rows in Å."""
    if not rows:
        return empty_particles()
    tomos, labels, *xyz = zip(*rows)
    return make_particles(list(tomos), list(labels), np.array(xyz).T)


def at(zyx, tomo: str = "t1", label: str = "a", shift_voxels=(0.0, 0.0, 0.0)) -> tuple:
    """A row at voxel ``zyx`` (+ shift, in voxels) as x, y, z Å."""
    z, y, x = (np.asarray(zyx, float) + shift_voxels) * VOXEL
    return (tomo, label, x, y, z)


def instance_map() -> np.ndarray:
    vol = np.zeros(SHAPE, np.int32)
    for i, (z, y, x) in enumerate(CENTRES, start=1):
        vol[z - 2:z + 3, y - 2:y + 3, x - 2:x + 3] = i
    return vol


def truth3(labels=("a", "a", "a"), tomo: str = "t1") -> list[tuple]:
    return [at(c, tomo, lab) for c, lab in zip(CENTRES, labels)]


def shrec(truth, pred, maps=None, **kw):
    maps = {"t1": instance_map()} if maps is None else maps
    return evaluate(particles(truth) if isinstance(truth, list) else truth, particles(pred),
                    rule="shrec", voxel_size=VOXEL, radii=RADII, instance_maps=maps, **kw)


def distance(truth, pred, **kw):
    return evaluate(particles(truth), particles(pred), rule="distance", voxel_size=VOXEL, radii=RADII, **kw)


def counts(s: ClassScore) -> tuple[int, int, int]:
    return s.tp, s.fp, s.fn


# ---- SHREC rule -------------------------------------------------------------------------------

def test_shrec_exact_hits_score_one():
    s = shrec(truth3(), [at(c) for c in CENTRES])
    assert counts(s.micro) == (3, 0, 0)
    assert (s.micro.precision, s.micro.recall, s.micro.f1) == (1.0, 1.0, 1.0)
    assert s.per_class["a"] == ClassScore("a", 3, 0, 0, 1.0, 1.0, 1.0)
    assert (s.macro_f1, s.n_truth, s.n_pred, s.rule) == (1.0, 3, 3, "shrec")


def test_shrec_duplicate_and_background_picks_lower_precision():
    pred = [at(CENTRES[0]), at(CENTRES[0], shift_voxels=(1, 1, 1)), at(CENTRES[1]), at((15, 2, 2))]
    s = shrec(truth3(), pred)
    assert counts(s.micro) == (2, 2, 1)
    assert s.micro.precision == pytest.approx(2 / 4)
    assert s.micro.recall == pytest.approx(2 / 3)
    assert s.micro.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_shrec_rounds_to_nearest_voxel_and_reports_picks_outside_the_volume():
    # the cube spans voxels 3..7 along x: x = 2.6 rounds in (floor would not), x = 7.6 rounds out
    inside, outside = at(CENTRES[0], shift_voxels=(0, 0, -2.4)), at(CENTRES[0], shift_voxels=(0, 0, 2.6))
    assert counts(shrec(truth3(), [inside]).micro) == (1, 0, 2)
    assert counts(shrec(truth3(), [outside]).micro) == (0, 1, 3)
    vol = instance_map()
    vol[-1, -1, -1] = 3  # the corner voxel belongs to particle 3; a pick beyond it is outside, never clipped onto it
    s = shrec(truth3(), [at((40, 40, 40)), at((-1, 5, 5))], maps={"t1": vol})
    assert counts(s.micro) == (0, 2, 3)
    assert s.breakdown == PickBreakdown(outside=2)


def test_shrec_first_pick_claims_a_particle_and_decides_its_class():
    truth = truth3(("a", "a", "b"))
    pred = [at(CENTRES[0], label="b"),  # first on particle 1, wrong class
            at(CENTRES[0], label="a", shift_voxels=(1, 0, 0)),  # duplicate: right class, but too late
            at(CENTRES[2], label="b"),  # true
            at(CENTRES[2], label="b", shift_voxels=(0, 1, 0)),  # duplicate
            at((15, 2, 2))]  # background
    s = shrec(truth, pred)
    assert counts(s.micro) == (2, 3, 1)  # localisation: two particles claimed, class ignored
    assert counts(s.class_aware) == (1, 4, 2)
    assert s.breakdown == PickBreakdown(true=1, wrong_class=1, duplicate=2, background=1)
    assert counts(s.per_class["a"]) == (0, 2, 2)  # picks labelled a: the duplicate and the background pick
    assert counts(s.per_class["b"]) == (1, 2, 0)
    assert (s.n_pred_per_class, s.n_truth_per_class) == ({"a": 2, "b": 3}, {"a": 2, "b": 1})
    assert s.picks_per_truth == pytest.approx(5 / 3)
    # the same picks in another order: the right-class pick on particle 1 comes first and counts
    reordered = shrec(truth, [pred[1], pred[0], *pred[2:]])
    assert counts(reordered.class_aware) == (2, 3, 1)
    assert reordered.breakdown == PickBreakdown(true=2, duplicate=2, background=1)


def test_distance_f1_is_class_agnostic_and_needs_picks_near_centres():
    truth = truth3(("a", "a", "b"))
    centred = shrec(truth, [at(c, label="b") for c in CENTRES])  # right places, partly wrong classes
    assert centred.distance_f1 == pytest.approx(1.0)
    off = shrec(truth, [at(c, shift_voxels=(2, 2, 2)) for c in CENTRES])  # still inside, 35 Å off: beyond r/2
    assert off.micro.f1 == pytest.approx(1.0) and off.distance_f1 == 0.0


def test_shrec_wrong_class_counts_in_micro_only():
    s = shrec(truth3(("a", "a", "b")), [at(CENTRES[0], label="a"), at(CENTRES[2], label="a")])
    assert counts(s.micro) == (2, 0, 1)
    assert counts(s.per_class["a"]) == (1, 1, 1)
    assert counts(s.per_class["b"]) == (0, 0, 1)
    assert s.macro_f1 == pytest.approx((0.5 + 0.0) / 2)


def test_shrec_instance_column_overrides_row_order():
    truth = particles(truth3()).append_column("instance", pa.array([3, 1, 2], pa.int32()))
    # rows are listed as instances 3, 1, 2: a pick on map value 1 hits row 1 (label b)
    truth = truth.set_column(1, "label", pa.array(["a", "b", "a"]))
    s = shrec(truth, [at(CENTRES[0], label="b")])
    assert counts(s.per_class["b"]) == (1, 0, 0)


def test_shrec_multiple_tomograms_keep_instance_ids_apart():
    truth = truth3(tomo="t1") + truth3(("b", "b", "b"), tomo="t2")[:1]
    maps = {"t1": instance_map(), "t2": instance_map()}
    pred = [at(CENTRES[0], "t2", "b"), at(CENTRES[1], "t2", "b"), at(CENTRES[1], "t1", "a")]
    s = shrec(truth, pred, maps=maps)
    # t2 only has truth instance 1: its map value 2 is no truth particle there, so a miss
    assert counts(s.micro) == (2, 1, 2)
    assert counts(s.per_class["a"]) == (1, 0, 2)
    assert counts(s.per_class["b"]) == (1, 1, 0)


def test_shrec_missing_instance_map_is_one_line_error():
    with pytest.raises(SasiError, match=r"instance map.*'t2'") as err:
        shrec(truth3(), [at(CENTRES[0], "t2")])
    assert "\n" not in str(err.value)
    with pytest.raises(SasiError, match="instance map"):
        evaluate(particles(truth3()), particles([]), rule="shrec", voxel_size=VOXEL, radii=RADII)


def test_shrec_rejects_non_integer_map_and_duplicate_instances():
    with pytest.raises(SasiError, match="3-D integer"):
        shrec(truth3(), [at(CENTRES[0])], maps={"t1": instance_map().astype(float)})
    truth = particles(truth3()).append_column("instance", pa.array([1, 1, 2]))
    with pytest.raises(SasiError, match="unique"):
        shrec(truth, [at(CENTRES[0])])


# ---- distance rule ----------------------------------------------------------------------------

def test_distance_threshold_is_factor_times_radius():
    truth = [("t1", "a", 100.0, 100.0, 100.0)]
    inside = [("t1", "a", 119.9, 100.0, 100.0)]
    outside = [("t1", "a", 100.0, 100.0, 120.1)]
    assert counts(distance(truth, inside).micro) == (1, 0, 0)
    assert counts(distance(truth, outside).micro) == (0, 1, 1)
    assert counts(distance(truth, outside, distance_factor=0.6).micro) == (1, 0, 0)


def test_distance_duplicate_pick_is_one_match_plus_fp():
    truth = [("t1", "a", 100.0, 100.0, 100.0)]
    pred = [("t1", "a", 105.0, 100.0, 100.0), ("t1", "a", 95.0, 100.0, 100.0)]
    s = distance(truth, pred)
    assert counts(s.micro) == (1, 1, 0)
    assert s.micro.precision == 0.5


def test_distance_assignment_is_optimal_not_greedy():
    # pick p1 is closest to t1 but is the only pick near t2; greedy nearest-first would match 1 pair
    truth = [("t1", "a", 0.0, 0.0, 0.0), ("t1", "a", 30.0, 0.0, 0.0)]
    pred = [("t1", "a", 12.0, 0.0, 0.0), ("t1", "a", -15.0, 0.0, 0.0)]
    assert counts(distance(truth, pred).micro) == (2, 0, 0)
    # two picks compete for one particle while one pick sits between two particles: 2 matches at most
    truth = [("t1", "a", 200.0, 0.0, 0.0), ("t1", "a", 0.0, 0.0, 0.0), ("t1", "a", 30.0, 0.0, 0.0)]
    pred = [("t1", "a", 195.0, 0.0, 0.0), ("t1", "a", 205.0, 0.0, 0.0), ("t1", "a", 15.0, 0.0, 0.0)]
    assert counts(distance(truth, pred).micro) == (2, 1, 1)


def test_distance_macro_vs_micro():
    truth = ([("t1", "a", 0.0, 0.0, 0.0)] + [("t1", "b", 100.0 * i, 500.0, 0.0) for i in range(3)]
             + [("t1", "c", 100.0 * i, 900.0, 0.0) for i in range(2)])
    pred = [("t1", "a", 1.0, 0.0, 0.0), ("t1", "b", 0.0, 501.0, 0.0), ("t1", "c", 0.0, 901.0, 0.0)]
    s = distance(truth, pred)
    assert s.per_class["a"].f1 == 1.0
    assert s.per_class["b"].f1 == pytest.approx(0.5)  # P = 1, R = 1/3
    assert s.per_class["c"].f1 == pytest.approx(2 / 3)  # P = 1, R = 1/2
    assert s.macro_f1 == pytest.approx((1 + 0.5 + 2 / 3) / 3)
    assert counts(s.micro) == (3, 0, 3)
    assert s.micro.f1 == pytest.approx(2 / 3)  # P = 1, R = 1/2


def test_distance_matches_only_within_tomogram_and_class():
    truth = [("t1", "a", 0.0, 0.0, 0.0), ("t2", "b", 0.0, 0.0, 0.0)]
    pred = [("t2", "a", 0.0, 0.0, 0.0), ("t1", "b", 0.0, 0.0, 0.0), ("t2", "b", 1.0, 0.0, 0.0)]
    s = distance(truth, pred)
    assert counts(s.per_class["a"]) == (0, 1, 1)
    assert counts(s.per_class["b"]) == (1, 1, 0)
    assert counts(s.micro) == (1, 2, 1)


# ---- edge cases shared by both rules ----------------------------------------------------------

@pytest.mark.parametrize("rule", ["shrec", "distance"])
def test_empty_predictions(rule):
    s = (shrec if rule == "shrec" else distance)(truth3(), [])
    assert s.micro == ClassScore("all", 0, 0, 3, 0.0, 0.0, 0.0)
    assert (s.macro_f1, s.fbeta, s.n_pred) == (0.0, 0.0, 0)


@pytest.mark.parametrize("rule", ["shrec", "distance"])
def test_empty_truth(rule):
    s = (shrec if rule == "shrec" else distance)([], [at(CENTRES[0]), at(CENTRES[1], label="b")])
    assert s.micro == ClassScore("all", 0, 2, 0, 0.0, 0.0, 0.0)
    assert sorted(s.per_class) == ["a", "b"]
    assert s.fbeta == 0.0


@pytest.mark.parametrize("rule", ["shrec", "distance"])
def test_both_empty(rule):
    s = (shrec if rule == "shrec" else distance)([], [])
    assert (s.per_class, s.micro.f1, s.macro_f1, s.fbeta, s.n_truth, s.n_pred) == ({}, 0.0, 0.0, 0.0, 0, 0)


@pytest.mark.parametrize("rule", ["shrec", "distance"])
def test_classes_on_one_side_only_count_in_macro(rule):
    s = (shrec if rule == "shrec" else distance)(truth3()[:1], [at(CENTRES[0]), at(CENTRES[2], label="b")])
    assert counts(s.per_class["a"]) == (1, 0, 0)
    assert counts(s.per_class["b"]) == (0, 1, 0)
    assert s.macro_f1 == pytest.approx(0.5)
    assert s.fbeta == pytest.approx(0.5)
    assert s.fbeta_per_class == {"a": 1.0, "b": 0.0}


@pytest.mark.parametrize("side", ["pred", "truth"])
def test_label_without_radius_is_error_naming_it(side):
    rows = {"truth": truth3(), "pred": [at(CENTRES[0])]}
    rows[side] = rows[side] + [at(CENTRES[1], label="mystery")]
    with pytest.raises(SasiError, match="mystery"):
        distance(rows["truth"], rows["pred"])


def test_unknown_rule_is_error():
    with pytest.raises(SasiError, match="rule"):
        evaluate(empty_particles(), empty_particles(), rule="hungarian", voxel_size=VOXEL, radii=RADII)


# ---- CZII F-beta ------------------------------------------------------------------------------

def test_fbeta_hand_example_duplicates_are_fp():
    truth = [("t1", "a", 0.0, 0.0, 0.0), ("t1", "a", 100.0, 0.0, 0.0), ("t1", "a", 200.0, 0.0, 0.0)]
    pred = [("t1", "a", 1.0, 0.0, 0.0), ("t1", "a", -1.0, 0.0, 0.0), ("t1", "a", 101.0, 0.0, 0.0),
            ("t1", "a", 500.0, 0.0, 0.0)]
    s = distance(truth, pred)
    # CZII: TP 2, FP 2, FN 1 -> P 1/2, R 2/3, F4 = 17 * (1/3) / (8 + 2/3)
    assert s.fbeta == pytest.approx(17 / 26)
    assert s.fbeta == pytest.approx(0.654, abs=1e-3)
    assert counts(s.micro) == (2, 2, 1)  # Hungarian agrees here: the duplicate is one extra FP


def test_fbeta_weights_and_beta():
    truth = [("t1", "a", 0.0, 0.0, 0.0), ("t1", "b", 500.0, 0.0, 0.0), ("t1", "b", 900.0, 0.0, 0.0)]
    pred = [("t1", "a", 0.0, 0.0, 0.0), ("t1", "b", 500.0, 0.0, 0.0)]
    fb = f_beta(1.0, 0.5, 4.0)
    assert distance(truth, pred).fbeta == pytest.approx((1 + fb) / 2)
    assert distance(truth, pred, fbeta_weights={"a": 0.0}).fbeta == pytest.approx(fb)
    assert distance(truth, pred, fbeta_weights={"a": 3.0}).fbeta == pytest.approx((3 + fb) / 4)
    assert distance(truth, pred, beta=1.0).fbeta == pytest.approx((1 + 2 / 3) / 2)


def test_to_dict_is_json_and_table_renders():
    s = shrec(truth3(("a", "a", "b")), [at(CENTRES[0]), at(CENTRES[2], label="b")])
    d = json.loads(json.dumps(s.to_dict()))
    assert d["per_class"]["b"]["tp"] == 1 and d["micro"]["label"] == "all" and d["rule"] == "shrec"
    console = Console(record=True, width=120)
    console.print(scores_table(s))
    text = console.export_text()
    assert "macro F1 0.833" in text and "all" in text and "0.667" in text


# ---- oracle: CZII metric as shipped in topcup -------------------------------------------------

CZII_RADII = {"apo-ferritin": 60.0, "beta-amylase": 65.0, "beta-galactosidase": 90.0, "ribosome": 150.0,
              "thyroglobulin": 130.0, "virus-like-particle": 135.0}
CZII_WEIGHTS = {"apo-ferritin": 1.0, "beta-amylase": 0.0, "beta-galactosidase": 2.0, "ribosome": 1.0,
                "thyroglobulin": 2.0, "virus-like-particle": 1.0}


def random_czii_case(rng: np.random.Generator, duplicates: bool) -> tuple[pa.Table, pa.Table]:
    """Truth on a jittered 400 Å grid (no pick can reach two particles) and noisy, partial picks."""
    truth, pred = [], []
    classes = list(CZII_RADII)
    grid = np.stack(np.meshgrid(*[np.arange(6) * 400.0] * 3, indexing="ij"), -1).reshape(-1, 3)
    for tomo in ("TS_5_4", "TS_69_2", "TS_86_3"):
        sites = grid[rng.choice(len(grid), 60, replace=False)] + rng.uniform(-20, 20, (60, 3))
        labels = [classes[i % len(classes)] for i in range(60)]
        truth += [(tomo, lab, *xyz) for lab, xyz in zip(labels, sites)]
        for lab, xyz in zip(labels, sites):
            if rng.random() < 0.75:  # found, at an offset up to 0.8 radius: some inside, some outside
                offset = rng.normal(size=3)
                offset *= rng.uniform(0, 0.8) * CZII_RADII[lab] / np.linalg.norm(offset)
                pred.append((tomo, rng.choice(classes) if rng.random() < 0.1 else lab, *(xyz + offset)))
                if duplicates and rng.random() < 0.3:
                    pred.append((tomo, lab, *(xyz - 0.3 * offset)))
        for xyz in rng.uniform(0, 2000, (10, 3)) + 200:  # stray picks between grid sites
            pred.append((tomo, rng.choice(classes), *xyz))
    return particles(truth), particles(pred)


@pytest.fixture(scope="module")
def czii_score():
    return pytest.importorskip("topcup.postprocess.metric").score


@pytest.mark.parametrize("seed,duplicates", [(0, False), (1, False), (2, False), (3, True), (4, True)])
def test_fbeta_equals_topcup(czii_score, seed, duplicates):
    truth, pred = random_czii_case(np.random.default_rng(seed), duplicates)
    frames = [t.rename_columns(["experiment", "particle_type", "x", "y", "z"]).to_pandas() for t in (truth, pred)]
    expected, per_class = czii_score(*frames, row_id_column_name="id", distance_multiplier=0.5, beta=4,
                                     particle_radius=CZII_RADII, particle_weights=CZII_WEIGHTS)
    s = evaluate(truth, pred, rule="distance", voxel_size=VOXEL, radii=CZII_RADII, fbeta_weights=CZII_WEIGHTS)
    assert 0.2 < s.fbeta < 0.99  # a non-trivial case
    assert s.fbeta == pytest.approx(expected, abs=1e-12)
    assert s.fbeta_per_class == pytest.approx(per_class, abs=1e-12)
    # no pick can reach two particles, so one-to-one matching finds exactly the CZII TPs
    assert s.micro.f1 == pytest.approx(_micro_f1_from_fbeta_counts(truth, pred))


def _micro_f1_from_fbeta_counts(truth: pa.Table, pred: pa.Table) -> float:
    """Micro F1 from CZII-style TP counting, computed with brute-force distances."""
    t, p = truth.to_pandas(), pred.to_pandas()
    tp = 0
    for (tomo, lab), group in t.groupby(["tomogram", "label"]):
        picks = p[(p.tomogram == tomo) & (p.label == lab)][["x", "y", "z"]].to_numpy()
        if len(picks):
            d = np.linalg.norm(group[["x", "y", "z"]].to_numpy()[:, None] - picks[None], axis=-1)
            tp += int((d <= 0.5 * CZII_RADII[lab]).any(axis=1).sum())
    precision, recall = tp / len(p), tp / len(t)
    return 2 * precision * recall / (precision + recall)
