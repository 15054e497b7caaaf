import numpy as np
import pytest

from sasi.errors import SasiError
from sasi.fewshot import IGNORE, class_counts, label_volume, sample_fewshot


@pytest.fixture(scope="module")
def truth(tiny_dataset):
    return tiny_dataset.particles(tiny_dataset.names("train")[0])


def test_k_per_class_and_deterministic(tiny_dataset, truth):
    a = sample_fewshot(truth, 3, tiny_dataset.classes, seed=1)
    b = sample_fewshot(truth, 3, tiny_dataset.classes, seed=1)
    c = sample_fewshot(truth, 3, tiny_dataset.classes, seed=2)
    assert a.equals(b) and not a.equals(c)
    assert class_counts(a) == dict.fromkeys(tiny_dataset.classes, 3)


def test_zero_shots_leaves_class_unlabelled(tiny_dataset, truth):
    shots = {c: 2 for c in tiny_dataset.classes} | {"rod": 0}
    with pytest.warns(UserWarning, match="'rod' has 0 labelled particles"):
        chosen = sample_fewshot(truth, shots, tiny_dataset.classes, seed=0)
    assert "rod" not in class_counts(chosen)


def test_empty_label_set_and_too_many(tiny_dataset, truth):
    with pytest.raises(SasiError, match="empty label set"), pytest.warns(UserWarning):
        sample_fewshot(truth, 0, tiny_dataset.classes, seed=0)
    with pytest.raises(SasiError, match="has only"):
        sample_fewshot(truth, 1000, tiny_dataset.classes, seed=0)


def test_label_volume_rules(tiny_dataset, truth):
    ds = tiny_dataset
    name = ds.names("train")[0]
    shape = ds.tomogram(name).shape
    chosen = sample_fewshot(truth, 2, ds.classes, seed=0)
    radii = {c: 3.0 for c in ds.classes}
    rest = label_volume(shape, chosen, ds.classes, radii, ds.voxel_size, background="rest")
    assert set(np.unique(rest)) == {0, 1, 2, 3, 4}
    sphere_voxels = (rest > 0).sum()
    assert 8 * 100 < sphere_voxels <= 8 * (4 / 3 * np.pi * 3**3 + 30)  # 8 spheres of radius 3
    certain = label_volume(shape, chosen, ds.classes, radii, ds.voxel_size, background="certain",
                           instances=ds.instances(name))
    assert (certain == IGNORE).any() and (certain == 0).any()
    np.testing.assert_array_equal(certain > 0, rest > 0)
    # certain background never touches a true particle
    assert not ((certain == 0) & (ds.instances(name) > 0)).any()
