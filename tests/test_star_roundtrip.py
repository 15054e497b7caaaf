"""RELION 5 STAR as ``sasi predict`` writes it, read back with ``starfile`` alone: centred Å and pixels.

RELION 5 stores ``rlnCenteredCoordinate{X,Y,Z}Angst`` relative to the tomogram centre at pixel ``N / 2``
(``N`` the box edge; for odd ``N`` that is half-way into the middle voxel's right half, the same float
convention pytom-match-pick uses to convert), so ``centred_Å = (rlnCoordinate - N / 2) * pixel size``; sasi
writes ``rlnCoordinate{X,Y,Z}`` in pixels from the centre of voxel 0, as its tables hold x, y, z in Å from there.
"""

from __future__ import annotations

import numpy as np
import pytest
import starfile

from sasi.io import read_particles, write_particles
from sasi.io.particles import make_particles

VOXEL = 7.84  # Å, deliberately not a round number


@pytest.mark.parametrize("shape_zyx", [(32, 64, 48), (31, 63, 47), (32, 63, 48)],
                         ids=["even", "odd", "mixed"])
@pytest.mark.parametrize("with_score", [True, False])
def test_star_reads_back_with_starfile(tmp_path, shape_zyx, with_score):
    rng = np.random.default_rng(sum(shape_zyx))
    n = 25
    # voxel positions anywhere in the volume, including its first and last voxel centres
    zyx = rng.uniform(0, 1, (n, 3)) * (np.asarray(shape_zyx) - 1)
    zyx[0], zyx[1] = 0, np.asarray(shape_zyx) - 1
    xyz = zyx[:, ::-1] * VOXEL
    labels = rng.choice(["ribosome", "apo-ferritin"], n).tolist()
    tomos = rng.choice(["TS_01", "TS_02"], n).tolist()
    table = make_particles(tomos, labels, xyz, score=rng.uniform(0, 1, n) if with_score else None)

    # exactly the call in `sasi predict`
    path = write_particles(table, tmp_path / "picks.star", voxel_size=VOXEL, shape_zyx=shape_zyx)

    df = starfile.read(path)  # a single loop: a DataFrame
    size_xyz = np.asarray(shape_zyx[::-1], dtype=np.float64)
    centred = df[["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst"]]
    pixel = df[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(np.float64)
    np.testing.assert_allclose(centred.to_numpy(np.float64), xyz - size_xyz / 2 * VOXEL, rtol=0, atol=1e-4)
    np.testing.assert_allclose(pixel, zyx[:, ::-1], rtol=0, atol=1e-5)
    # RELION 5's own relation between the two coordinate kinds
    np.testing.assert_allclose(centred.to_numpy(np.float64), (pixel - size_xyz / 2) * VOXEL, rtol=0, atol=1e-4)
    np.testing.assert_allclose(df["rlnTomoTiltSeriesPixelSize"].to_numpy(np.float64), VOXEL)
    assert df["rlnTomoName"].astype(str).tolist() == tomos
    assert df["sasiLabel"].astype(str).tolist() == labels
    assert ("rlnAutopickFigureOfMerit" in df) == with_score

    # and sasi reads both forms back into the same table
    back = read_particles(path)
    got = np.stack([back.column(c).to_numpy() for c in ("x", "y", "z")], axis=1)
    np.testing.assert_allclose(got, xyz, rtol=0, atol=1e-4)
    assert back.column("label").to_pylist() == labels and back.column("tomogram").to_pylist() == tomos
    centred_only = df.drop(columns=["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"])
    starfile.write({"particles": centred_only}, tmp_path / "centred.star", overwrite=True)
    back = read_particles(tmp_path / "centred.star", shape_zyx=shape_zyx)
    got = np.stack([back.column(c).to_numpy() for c in ("x", "y", "z")], axis=1)
    np.testing.assert_allclose(got, xyz, rtol=0, atol=1e-4)


def test_pixel_mode_without_shape(tmp_path):
    xyz = np.array([[0.0, 0.0, 0.0], [10.5, 20.25, 30.125]])
    table = make_particles("TS", ["a", "b"], xyz)
    path = write_particles(table, tmp_path / "p.star", voxel_size=VOXEL, star_coordinates="pixel")
    df = starfile.read(path)
    assert "rlnCenteredCoordinateXAngst" not in df
    np.testing.assert_allclose(df[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy(np.float64),
                               xyz / VOXEL, rtol=0, atol=1e-6)
