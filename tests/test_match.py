"""Template matching: rotation sets, exact NCC on planted templates, peak extraction, thresholds, end to end."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from sasi.match import Imaging, MatchConfig, Matcher, extract_peaks, fit_thresholds, match_and_score, merge_classes
from sasi.match.angles import rotation_count, rotations
from sasi.match.correlate import rotate
from sasi.simulate import builtin_templates


@pytest.mark.parametrize("step", [10, 30, 60])
def test_rotations_are_rotations(step):
    mats = rotations(step)
    assert len(mats) == rotation_count(step)
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", mats, mats), np.broadcast_to(np.eye(3), mats.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0, atol=1e-12)
    # near-uniform: every random rotation is within about the step of the set (angle of R_a^T R_b)
    rng = np.random.default_rng(0)
    from scipy.spatial.transform import Rotation

    probe = Rotation.random(50, random_state=rng).as_matrix()
    cos = (np.einsum("pij,nij->pn", probe, mats) - 1) / 2
    nearest = np.degrees(np.arccos(np.clip(cos.max(1), -1, 1)))
    assert nearest.max() < 1.2 * step
    assert rotation_count(10) == 14868


def _planted(shape=(30, 44, 40), centre=(14, 20, 19), which=1, rot_index=5, step=60):
    template = builtin_templates()[which].density
    mats = rotations(step)
    rotated = rotate(torch.as_tensor(template), torch.as_tensor(mats[rot_index:rot_index + 1], dtype=torch.float32))[0]
    volume = np.zeros(shape, np.float32)
    h = template.shape[0] // 2
    volume[tuple(slice(c - h, c + h + 1) for c in centre)] = rotated.numpy()
    return volume, template, mats


def test_ncc_is_one_at_a_planted_template():
    volume, template, mats = _planted()
    matcher = Matcher(volume, 10.0, Imaging(tilt_range=None, defocus_um=None, dark=False), "cpu", batch=8)
    score = matcher.score(template, mats[:12]).numpy()
    assert np.unravel_index(score.argmax(), score.shape) == (14, 20, 19)
    assert score.max() == pytest.approx(1.0, abs=2e-3)
    assert score.max() <= 1.0 + 2e-3


def test_wedge_aware_template_beats_the_plain_one():
    from sasi.simulate.imaging import fast_wedge

    volume, template, mats = _planted()
    imaged = fast_wedge(volume, 10.0, snr=1e9, rng=np.random.default_rng(0), tilt_range=45.0, defocus_um=3.0)
    aware = Matcher(imaged, 10.0, Imaging(tilt_range=45.0, defocus_um=3.0), "cpu").score(template, mats[5:6])
    plain = Matcher(imaged, 10.0, Imaging(tilt_range=None, defocus_um=None, dark=True), "cpu").score(template, mats[5:6])
    assert aware.numpy()[14, 20, 19] > 0.9
    assert aware.numpy()[14, 20, 19] > plain.numpy()[14, 20, 19] + 0.1


def test_extract_peaks_greedy_exclusion():
    score = torch.zeros(20, 20, 20)
    score[5, 5, 5], score[5, 5, 8], score[15, 15, 15], score[15, 15, 16] = 1.0, 0.8, 0.9, 0.85
    zyx, values = extract_peaks(score, radius=4, min_score=0.1)
    assert zyx.tolist() == [[5, 5, 5], [15, 15, 15]] and values.tolist() == pytest.approx([1.0, 0.9])
    zyx, _ = extract_peaks(score, radius=2, min_score=0.1)
    assert len(zyx) == 3  # (5,5,8) is 3 voxels away: outside a radius-2 sphere; (15,15,16) is inside
    labels, zyx, score_ = merge_classes({"a": (np.array([[5.0, 5, 5]]), np.array([0.5])),
                                         "b": (np.array([[5.0, 5, 6], [15, 15, 15]]), np.array([0.45, 0.2]))},
                                        {"a": 3.0, "b": 3.0}, {"a": 0.4, "b": 0.2})
    assert labels == ["b", "b"] and zyx.tolist() == [[5, 5, 6], [15, 15, 15]]  # b is further above its threshold


def test_fit_thresholds_maximises_class_f1():
    instances = np.zeros((10, 10, 10), np.int32)
    instances[1:3, 1:3, 1:3], instances[6:8, 6:8, 6:8] = 1, 2
    truth = pa.table({"label": ["a", "a"]})
    peaks = {"a": (np.array([[1.0, 1, 1], [4, 4, 4], [6, 6, 6], [9, 0, 9]]), np.array([0.9, 0.8, 0.7, 0.1]))}
    assert fit_thresholds(peaks, truth, instances)["a"] == pytest.approx(0.4)  # keep 3: F1 = 4/5 beats 2/3
    assert fit_thresholds({"a": (np.zeros((0, 3)), np.zeros(0))}, truth, instances)["a"] >= 1.0


def test_match_and_score_end_to_end(tmp_path):
    from sasi.simulate import SimulationConfig, simulate_dataset

    config = SimulationConfig(shape=(24, 48, 48), voxel_size=20.0, snr=1.0, density=0.08, classes=("globe", "tetra"))
    ds = simulate_dataset(tmp_path / "ds", config, {"val": 1, "test": 1}, seed=1, progress=False)
    report = match_and_score(ds, "test", "val", MatchConfig(angle_step=90, device="cpu", batch=24))
    assert "score" in report.picks.column_names and set(report.picks.column("tomogram").to_pylist()) <= {"test_00"}
    assert set(report.thresholds) == {"globe", "tetra"} and set(report.seconds) == {"val_00", "test_00"}
    assert report.metrics["test_class_f1"] > 0.7, report.metrics
    assert report.settings["rotations"] == rotation_count(90) and report.settings["preset"] == "template-matching"


def test_cli_match(tmp_path):
    from typer.testing import CliRunner

    from sasi.cli import app
    from sasi.simulate import SimulationConfig, simulate_dataset

    if not any(c.name == "match" for c in app.registered_commands):
        pytest.skip("sasi match is not registered in sasi/cli.py")
    config = SimulationConfig(shape=(16, 32, 32), voxel_size=20.0, snr=2.0, density=0.05, classes=("globe",))
    simulate_dataset(tmp_path / "ds", config, {"val": 1, "test": 1}, seed=2, progress=False)
    result = CliRunner().invoke(app, ["match", str(tmp_path / "ds"), "--angle-step", "90", "--device", "cpu",
                                      "--out", str(tmp_path / "m.star"), "--json", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.star").is_file() and (tmp_path / "m.json").is_file()
