"""Template matching on the simulator's real tilt-series path (regression: the contrast the matcher assumed).

The tilt-series path applies torch-ctf's CTF, which is positive at low frequency, so its reconstructions show
particles *bright*; the Fourier-wedge path (sasi's own ``ctf``) shows them dark. The matcher used to assume dark
particles whenever a CTF was given, which anti-correlated every template with every particle (shrec-like-v1:
class-aware F1 0.007, localisation F1 at chance). These tests simulate small tilt series and check that picks land
on particles of the right class, through the dataset manifest as ``sasi match`` reads it.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from sasi.config import to_dict
from sasi.match import MatchConfig, Matcher, extract_peaks, match_and_score
from sasi.match.run import dataset_imaging
from sasi.simulate import SimulationConfig, builtin_templates

pytest.importorskip("torch_fourier_slice")
pytest.importorskip("torch_ctf")


def test_tilt_series_true_orientations_pick_their_particles():
    from sasi.simulate.writer import simulate_tomogram

    config = SimulationConfig(shape=(32, 64, 64), snr=0.5, density=0.1, imaging="tiltseries")
    templates = builtin_templates(config.voxel_size)
    tomo = simulate_tomogram(config, templates, seed=4)
    scene = tomo.scene
    assert len(scene.classes) >= 6
    # the scene rotates each template by from_euler("ZXZ", euler) acting on z, y, x (what Matcher.score expects)
    mats = Rotation.from_euler("ZXZ", np.asarray(scene.eulers), degrees=True).as_matrix()
    imaging = dataset_imaging(SimpleNamespace(meta={"simulation": to_dict(config)}), MatchConfig())
    matcher = Matcher(tomo.volume, config.voxel_size, imaging, "cpu", batch=16)
    hits, total = 0, 0
    for k, t in enumerate(templates, start=1):
        mine = [i for i, c in enumerate(scene.classes) if c == k]
        if not mine:
            continue
        score = matcher.score(t.density, mats[mine])
        zyx, _ = extract_peaks(score, t.radius, -np.inf, max_peaks=len(mine))
        idx = np.clip(np.rint(zyx).astype(int), 0, np.asarray(config.shape) - 1)
        found = scene.instances[tuple(idx.T)]
        hits += sum(1 for f in set(found.tolist()) if f and scene.classes[f - 1] == k)
        total += len(mine)
    assert hits >= 0.8 * total, (hits, total)


def test_match_and_score_on_a_tilt_series_dataset(tmp_path):
    from sasi.simulate import simulate_dataset

    config = SimulationConfig(shape=(24, 48, 48), voxel_size=20.0, snr=0.5, density=0.08, classes=("globe", "tetra"),
                              imaging="tiltseries")
    ds = simulate_dataset(tmp_path / "ds", config, {"val": 1, "test": 1}, seed=1, progress=False)
    report = match_and_score(ds, "test", "val", MatchConfig(angle_step=90, device="cpu", batch=24))
    assert report.metrics["test_class_f1"] > 0.7, report.metrics
