"""copick in and out with the real copick library: a project built here from a small simulated dataset."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

copick = pytest.importorskip("copick")

from sasi.cli_copick import app  # noqa: E402
from sasi.dataset import load_dataset, score_on_dataset  # noqa: E402
from sasi.errors import SasiError  # noqa: E402
from sasi.copick import export_picks, import_copick, open_project, read_run_picks  # noqa: E402
from sasi.io.particles import make_particles  # noqa: E402


def _xyz(table: pa.Table) -> np.ndarray:
    return np.stack([table.column(c).to_numpy() for c in ("x", "y", "z")], axis=1)


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([("tomogram", "ascending"), ("label", "ascending"), ("x", "ascending")])


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from sasi.simulate import SimulationConfig, simulate_dataset

    out = tmp_path_factory.mktemp("copick-src") / "data"
    config = SimulationConfig(shape=(32, 56, 56), snr=1.0, density=0.1)
    return simulate_dataset(out, config, {"train": 1, "val": 1, "test": 1}, seed=3, progress=False)


@pytest.fixture
def project(source, tmp_path):
    """A filesystem copick project: one run per simulated tomogram, the truth as 'curation' picks."""
    from copick.models import PickableObject

    folder = tmp_path / "copick-proj"
    objects = [PickableObject(name=c, is_particle=True, label=i + 1, radius=source.radii[c])
               for i, c in enumerate(source.classes)]
    objects.append(PickableObject(name="membrane", is_particle=False, label=len(objects) + 1))
    root = copick.new_config(str(folder / "config.json"), str(folder / "overlay"), pickable_objects=objects)
    for split, names in source.splits.items():
        for name in names:
            run = root.new_run(name)
            run.new_voxel_spacing(source.voxel_size).new_tomogram("wbp").from_numpy(source.tomogram(name).data, levels=1)
            truth = source.particles(name)
            for c in source.classes:
                rows = truth.filter(pa.compute.equal(truth.column("label"), c))
                run.new_picks(c, "0", "curation").from_numpy(_xyz(rows))
    root.new_run("empty").new_voxel_spacing(source.voxel_size).new_tomogram("wbp").from_numpy(
        np.zeros((8, 8, 8), np.float32), levels=1)
    return folder / "config.json"


def test_import_round_trip(source, project, tmp_path):
    result = CliRunner().invoke(app, ["import", str(project), str(tmp_path / "ds"), "--split",
                                      "train=train_00", "--split", "val=val_00", "--split", "test=test_00"])
    assert result.exit_code == 0, result.output
    ds = load_dataset(tmp_path / "ds")
    assert ds.classes == source.classes and ds.voxel_size == source.voxel_size
    assert ds.radii == pytest.approx(source.radii)
    assert ds.splits == {"train": ["train_00"], "val": ["val_00"], "test": ["test_00"]}
    for name in ("train_00", "val_00", "test_00"):
        np.testing.assert_array_equal(ds.tomogram(name).data, source.tomogram(name).data)
        got, want = _sorted(ds.particles(name)), _sorted(source.particles(name))
        assert got.column("label").to_pylist() == want.column("label").to_pylist()
        np.testing.assert_allclose(_xyz(got), _xyz(want), rtol=0, atol=1e-9)
    # sphere occupancy maps: the truth scores itself perfectly under the SHREC rule
    truth = pa.concat_tables([ds.particles(n) for n in ds.names("test")])
    assert score_on_dataset(ds, truth, ds.names("test")).micro.f1 == 1.0


def test_default_splits_and_unlabelled(project, tmp_path):
    ds = import_copick(project, tmp_path / "ds")
    assert ds.splits == {"train": ["test_00"], "val": ["train_00"], "test": ["val_00"], "unlabelled": ["empty"]}


def test_export_round_trip(source, project, tmp_path):
    truth = source.particles("test_00")
    picks = make_particles(truth.column("tomogram").to_pylist(), truth.column("label").to_pylist(), _xyz(truth) + 0.25,
                           score=np.linspace(0.1, 0.9, truth.num_rows))
    path = tmp_path / "picks.parquet"
    from sasi.io import write_particles

    write_particles(picks, path)
    result = CliRunner().invoke(app, ["export", str(path), str(project), "--user", "sasi", "--session", "7"])
    assert result.exit_code == 0, result.output
    run = open_project(project).get_run("test_00")
    for c in set(truth.column("label").to_pylist()):
        (stored,) = run.get_picks(object_name=c, user_id="sasi", session_id="7")
        rows = picks.filter(pa.compute.equal(picks.column("label"), c))
        np.testing.assert_allclose(stored.numpy()[0], _xyz(rows), rtol=0, atol=1e-9)
        np.testing.assert_allclose(stored.scores(), rows.column("score").to_numpy(), rtol=0, atol=1e-12)
    back = read_run_picks(run, source.classes, user_id="sasi", session_id="7")
    np.testing.assert_allclose(_xyz(_sorted(back)), _xyz(_sorted(picks)), rtol=0, atol=1e-9)
    # a second export into the same session needs --overwrite
    with pytest.raises(SasiError, match="already has"):
        export_picks(picks, project, user_id="sasi", session_id="7")
    assert export_picks(picks, project, user_id="sasi", session_id="7", overwrite=True)
    # now two users picked test_00: reading without --user is ambiguous; with it, it is the truth again
    with pytest.raises(SasiError, match="several"):
        import_copick(project, tmp_path / "amb", runs=["test_00"])
    ds = import_copick(project, tmp_path / "cur", runs=["test_00"], user_id="curation", session_id="0")
    np.testing.assert_allclose(_xyz(_sorted(ds.particles("test_00"))), _xyz(_sorted(truth)), atol=1e-9)


def test_export_errors(project):
    picks = make_particles("nowhere", ["ring7"], np.zeros((1, 3)))
    with pytest.raises(SasiError, match="no copick run"):
        export_picks(picks, project)
    with pytest.raises(SasiError, match="not particle objects"):
        export_picks(make_particles("test_00", ["membrane"], np.zeros((1, 3))), project)
    with pytest.raises(SasiError, match="no particle object"):
        import_copick(project, "unused", classes=["nope"])
