import time

import numpy as np
import pytest
from conftest import POLNET

from sasi.dataset import load_dataset
from sasi.errors import SasiError
from sasi.io.particles import particles_to_voxels
from sasi.simulate import SimulationConfig, builtin_templates, load_templates
from sasi.simulate.imaging import fast_wedge, tilt_series
from sasi.simulate.writer import simulate_tomogram


def test_deterministic_for_a_seed():
    config = SimulationConfig(shape=(32, 64, 64), density=0.08)
    a, b = (simulate_tomogram(config, builtin_templates(), seed=7) for _ in range(2))
    c = simulate_tomogram(config, builtin_templates(), seed=8)
    np.testing.assert_array_equal(a.volume, b.volume)
    assert a.particles.equals(b.particles)
    assert not np.array_equal(a.volume, c.volume)


def test_workers_simulate_the_same_dataset(tmp_path):
    """Tomograms simulated in worker processes: the same particles and labels, voxels equal up to float rounding."""
    from sasi.simulate import simulate_dataset

    config = SimulationConfig(shape=(32, 48, 48), density=0.08, imaging="tiltseries")
    one, two = (simulate_dataset(tmp_path / f"w{n}", config, {"train": 2, "val": 1}, seed=5, progress=False, workers=n)
                for n in (1, 2))
    assert two.splits == one.splits
    for name in ("train_00", "train_01", "val_00"):
        assert two.particles(name).equals(one.particles(name))
        np.testing.assert_array_equal(two.instances(name), one.instances(name))
        a, b = one.tomogram(name).data, two.tomogram(name).data
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-4 * float(a.std()))


def test_ground_truth_is_consistent(tiny_dataset):
    ds = tiny_dataset
    name = ds.names("train")[0]
    truth = ds.particles(name, shape_zyx=ds.tomogram(name).shape)
    instances = ds.instances(name)
    labels = load_dataset(ds.root).root  # manifest loads
    assert labels == ds.root
    # every particle centre lies inside its own instance, instance ids are 1..n in row order
    zyx = np.round(particles_to_voxels(truth, ds.voxel_size)).astype(int)
    assert [instances[tuple(p)] for p in zyx] == list(range(1, truth.num_rows + 1))
    assert instances.max() == truth.num_rows
    # all classes present, roughly balanced, no overlaps (instance ids partition the voxels)
    counts = {c: truth.column("label").to_pylist().count(c) for c in ds.classes}
    assert min(counts.values()) >= max(counts.values()) - 1 >= 1
    lines = (ds.root / name / "particle_locations.txt").read_text().splitlines()
    assert len(lines) == truth.num_rows and lines[0].split()[0] in ds.classes


def test_density_controls_particle_count():
    sparse = simulate_tomogram(SimulationConfig(shape=(48, 96, 96), density=0.02), builtin_templates(), 0)
    dense = simulate_tomogram(SimulationConfig(shape=(48, 96, 96), density=0.10), builtin_templates(), 0)
    assert dense.particles.num_rows > 2 * sparse.particles.num_rows


@pytest.mark.parametrize("point", [(10, 30, 14), (20, 10, 40)])
def test_imaging_axis_conventions_one_voxel(point, monkeypatch):
    from sasi.simulate import imaging

    monkeypatch.setattr(imaging, "ctf", lambda k, d, v=300.0: np.ones_like(k))
    volume = np.zeros((32, 48, 48), np.float32)
    volume[point] = 1
    rng = np.random.default_rng(0)
    wedge = fast_wedge(volume, 10.0, snr=1e9, rng=rng)
    assert np.unravel_index(np.abs(wedge).argmax(), wedge.shape) == point
    series = tilt_series(volume, 10.0, snr=1e9, rng=rng, tilt_step=6.0, defocus_um=0.0, defocus_spread_um=0.0)
    assert np.unravel_index(np.abs(series).argmax(), series.shape) == point


def test_missing_wedge_elongates_along_z(monkeypatch):
    from sasi.simulate import imaging

    monkeypatch.setattr(imaging, "ctf", lambda k, d, v=300.0: np.ones_like(k))
    volume = np.zeros((32, 32, 32), np.float32)
    volume[16, 16, 16] = 1
    out = np.abs(fast_wedge(volume, 10.0, snr=1e9, rng=np.random.default_rng(0)))
    assert out[19, 16, 16] > 1.5 * out[16, 16, 19]  # smeared along z, not along x


def test_fast_path_256_meets_its_snr_in_seconds():
    volume = np.random.default_rng(0).random((256, 256, 256), dtype=np.float32)
    t0 = time.perf_counter()
    noisy = fast_wedge(volume, 10.0, snr=0.1, rng=np.random.default_rng(0))
    seconds = time.perf_counter() - t0
    print(f"fast wedge 256^3: {seconds:.2f} s")
    clean = fast_wedge(volume, 10.0, snr=0, rng=np.random.default_rng(0))  # snr 0: no noise added
    assert noisy.shape == volume.shape and noisy.dtype == np.float32 and np.isfinite(noisy).all()
    assert clean.var() / (noisy - clean).var() == pytest.approx(0.1, rel=0.01)
    assert seconds < 60  # about 4 s on 2 CPU cores; catches a fall back to a slow path


@pytest.mark.skipif(not POLNET.is_dir(), reason="shared polnet templates not beside the checkout")
def test_real_templates_load():
    templates = load_templates(POLNET, 10.0, ["1bxn", "4v94"])
    assert [t.name for t in templates] == ["1bxn", "4v94"]
    assert templates[1].radius > templates[0].radius  # the ribosome is bigger than 1bxn
    tomo = simulate_tomogram(SimulationConfig(shape=(48, 96, 96), density=0.08), templates, 0)
    assert set(tomo.particles.column("label").to_pylist()) == {"1bxn", "4v94"}


def test_missing_template_folder():
    with pytest.raises(SasiError, match="template folder not found"):
        load_templates("no/such/folder", 10.0)


def test_preview_outlines_every_particle_the_slice_cuts(tmp_path):
    from sasi.plots import particles_in_slice
    from sasi.simulate import simulate_dataset

    ds = simulate_dataset(tmp_path / "d", SimulationConfig(shape=(32, 64, 64), density=0.08), {"train": 1},
                          seed=3, preview=True, progress=False)
    assert (ds.root / "train_00" / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    truth, instances = ds.particles("train_00"), ds.instances("train_00")
    zyx = particles_to_voxels(truth, ds.voxel_size)
    cut = particles_in_slice(zyx, 16, instances)
    assert cut and sorted(cut) == [i - 1 for i in np.unique(instances[16]) if i]
    # without the occupancy map only particles centred near the slice are drawn, a subset of those cut
    assert set(particles_in_slice(zyx, 16, band=1.0)) <= set(cut)
