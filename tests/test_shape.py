"""Few-shot classes from shape (sasi.detect.shape): rotation-invariant descriptors and a shrunk linear discriminant."""

import numpy as np
import pytest

from sasi.detect.shape import ShapeClassifier, shape_descriptors
from sasi.errors import SasiError


def spheres(radii: list[float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy volume with one bright ball per radius, 24 voxels apart; returns it and the centres."""
    rng = np.random.default_rng(seed)
    volume = rng.normal(0, 1, (24, 24, 24 * len(radii))).astype(np.float32)
    zz, yy, xx = np.indices(volume.shape)
    centres = np.array([[12, 12, 12 + 24 * i] for i in range(len(radii))]) + rng.integers(-2, 3, (len(radii), 3))
    for (z, y, x), r in zip(centres, radii):
        volume[(zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2 <= r * r] += 1.5
    return volume, centres


def test_three_shots_tell_small_from_large_particles():
    classes = np.array([0, 1, 2] * 4)
    volume, centres = spheres([2.5, 4.5, 7.0] * 4, seed=0)
    x = shape_descriptors(volume, centres, radius=10)
    assert x.shape == (12, 21)
    model = ShapeClassifier.fit(x[:9], classes[:9], 3)  # three examples per class
    new_volume, new_centres = spheres([7.0, 2.5, 4.5] * 3, seed=1)
    assert (model.predict(shape_descriptors(new_volume, new_centres, radius=10)) == [2, 0, 1] * 3).all()


def test_descriptors_ignore_orientation():
    volume, centres = spheres([5.0], seed=2)
    volume[:, :, 17:] = 0.0  # an anisotropic neighbourhood, rotated by a transpose below
    turned = np.ascontiguousarray(volume.transpose(2, 1, 0))
    a = shape_descriptors(volume, centres, radius=6)
    b = shape_descriptors(turned, centres[:, ::-1], radius=6)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_bad_input_is_named():
    volume, centres = spheres([3.0], seed=3)
    with pytest.raises(SasiError, match="outside the volume"):
        shape_descriptors(volume, centres + 100)
    with pytest.raises(SasiError, match="class index"):
        ShapeClassifier.fit(np.zeros((2, 5)), np.array([0, 0]), 2)


def test_reclassify_gives_picks_the_class_of_their_shape():
    from sasi.detect.shape import fit_on_particles, reclassify
    from sasi.io.particles import make_particles, voxels_to_angstrom

    classes, voxel = ["small", "medium", "large"], 10.0
    volume, centres = spheres([2.5, 4.5, 7.0] * 4, seed=0)

    def table(zyx, names):
        return make_particles("t", names, voxels_to_angstrom(zyx, voxel), score=np.ones(len(names)))

    model = fit_on_particles(volume, table(centres[:9], classes * 3), classes, voxel)
    new_volume, new_centres = spheres([7.0, 2.5, 4.5], seed=1)
    picks = table(new_centres, ["small"] * 3)  # a network's classes, all wrong but one
    again = reclassify(picks, new_volume, model, classes, voxel)
    assert again.column("label").to_pylist() == ["large", "small", "medium"]
    assert again.drop_columns(["label"]).equals(picks.drop_columns(["label"]))  # only the classes change
    assert reclassify(picks.slice(0, 0), new_volume, model, classes, voxel).num_rows == 0
