import numpy as np
import pyarrow as pa
import pytest

from sasi.errors import SasiError
from sasi.io import (
    read_mrc,
    read_particles,
    validate_particles,
    write_mrc,
    write_particles,
)
from sasi.io.particles import make_particles, particles_to_voxels


@pytest.fixture
def table():
    xyz = np.array([[10.0, 20.0, 30.0], [55.5, 100.0, 5.0], [0.0, 0.0, 0.0]])
    return make_particles(["t1", "t1", "t2"], ["a", "b", "a"], xyz, score=[0.9, 0.5, 0.1])


def test_mrc_round_trip(tmp_path):
    data = np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)
    write_mrc(tmp_path / "v.mrc", data, voxel_size=12.5)
    tomo = read_mrc(tmp_path / "v.mrc")
    assert tomo.shape == (6, 7, 8) and tomo.voxel_size == pytest.approx(12.5)
    np.testing.assert_array_equal(tomo.data, data)
    mapped = read_mrc(tmp_path / "v.mrc", mmap=True)
    np.testing.assert_array_equal(mapped.data, data)


def test_integer_labels_written_as_int16(tmp_path):
    write_mrc(tmp_path / "l.mrc", np.arange(24).reshape(2, 3, 4), voxel_size=10)
    assert read_mrc(tmp_path / "l.mrc", mmap=True).data.dtype == np.int16


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".star"])
def test_particle_round_trip(tmp_path, table, suffix):
    path = write_particles(table, tmp_path / f"p{suffix}", voxel_size=10.0, shape_zyx=(20, 30, 40))
    back = read_particles(path, voxel_size=10.0, shape_zyx=(20, 30, 40))
    for col in ("x", "y", "z", "score"):
        np.testing.assert_allclose(back.column(col).to_numpy(), table.column(col).to_numpy())
    assert back.column("label").to_pylist() == ["a", "b", "a"]
    assert back.column("tomogram").to_pylist() == ["t1", "t1", "t2"]


def test_relion5_centred_coordinates(tmp_path, table):
    import starfile

    path = write_particles(table, tmp_path / "p.star", voxel_size=10.0, shape_zyx=(20, 30, 40))
    df = starfile.read(path)
    # x = 10 Å, volume x extent 40 voxels * 10 Å, centre at 200 Å
    assert df["rlnCenteredCoordinateXAngst"].iloc[0] == pytest.approx(10.0 - 200.0)
    assert df["rlnCoordinateX"].iloc[0] == pytest.approx(1.0)


def test_voxel_conversion_is_zyx(table):
    zyx = particles_to_voxels(table, 10.0)
    np.testing.assert_allclose(zyx[0], [3.0, 2.0, 1.0])


def test_truncated_mrc_is_one_line_error(tmp_path):
    write_mrc(tmp_path / "v.mrc", np.zeros((8, 8, 8), np.float32), 10)
    raw = (tmp_path / "v.mrc").read_bytes()
    (tmp_path / "cut.mrc").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(SasiError, match="cut.mrc: not a readable MRC file") as err:
        read_mrc(tmp_path / "cut.mrc")
    assert "\n" not in str(err.value)
    (tmp_path / "junk.mrc").write_bytes(b"not an mrc" * 200)
    with pytest.raises(SasiError, match="junk.mrc"):
        read_mrc(tmp_path / "junk.mrc")


def test_nan_volume_rejected(tmp_path):
    data = np.zeros((4, 4, 4), np.float32)
    data[1, 2, 3] = np.nan
    write_mrc(tmp_path / "nan.mrc", data, 10)
    with pytest.raises(SasiError, match="1 NaN/inf voxels"):
        read_mrc(tmp_path / "nan.mrc")


def test_wrong_voxel_size_rejected(tmp_path):
    write_mrc(tmp_path / "v.mrc", np.zeros((4, 4, 4), np.float32), 7.0)
    with pytest.raises(SasiError, match="voxel size 7 Å does not match the expected 10 Å"):
        read_mrc(tmp_path / "v.mrc", expect_voxel_size=10.0)


def test_non_float_volume_rejected(tmp_path):
    import mrcfile

    with mrcfile.new(tmp_path / "c.mrc") as mrc:
        mrc.set_data(np.zeros((2, 2, 2), np.complex64))
    with pytest.raises(SasiError, match="real numeric voxels"):
        read_mrc(tmp_path / "c.mrc")


def test_coordinates_outside_volume(table):
    with pytest.raises(SasiError, match="1 particle\\(s\\) outside the volume, first at row 1"):
        validate_particles(table, shape_zyx=(20, 30, 40), voxel_size=2.0)


def test_unknown_class_and_nan(table):
    with pytest.raises(SasiError, match="unknown class name\\(s\\) \\['b'\\]"):
        validate_particles(table, shape_zyx=(20, 30, 40), voxel_size=10.0, classes=["a"])
    bad = make_particles("t", ["a"], np.array([[np.nan, 1, 1]]))
    with pytest.raises(SasiError, match="NaN"):
        validate_particles(bad, shape_zyx=(20, 30, 40), voxel_size=10.0)


def test_bad_table_files(tmp_path):
    (tmp_path / "p.csv").write_text("tomogram,label,x,y\nt,a,1,2\n")
    with pytest.raises(SasiError, match="lacks column\\(s\\) \\['z'\\]"):
        read_particles(tmp_path / "p.csv")
    (tmp_path / "p.parquet").write_bytes(b"garbage")
    with pytest.raises(SasiError, match="cannot parse particle table"):
        read_particles(tmp_path / "p.parquet")
    with pytest.raises(SasiError, match="unknown particle table format"):
        read_particles(tmp_path / "p.txt")


def test_failed_write_leaves_nothing(tmp_path, table):
    with pytest.raises(SasiError):
        write_particles(table, tmp_path / "p.star")  # no voxel size
    assert list(tmp_path.iterdir()) == []


def test_empty_table_round_trip(tmp_path):
    empty = make_particles("t", [], np.zeros((0, 3)))
    back = read_particles(write_particles(empty, tmp_path / "e.parquet"))
    assert back.num_rows == 0 and back.schema.names[:5] == ["tomogram", "label", "x", "y", "z"]
    assert isinstance(back, pa.Table)
