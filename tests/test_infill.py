import pytest
import torch

from sasi.errors import SasiError
from sasi.method import IGNORE
from sasi.method.infill import InfillConfig, volume_infill

N_CLASSES = 4


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def batch(b=4, size=12):
    """Crops with one cubic particle each (class 1..3) and a matching indicator image."""
    mask = torch.zeros(b, size, size, size, dtype=torch.long)
    for i in range(b):
        mask[i, 4:7, 5:8, 3:6] = 1 + i % 3
    return (mask > 0).float().unsqueeze(1), mask


@pytest.mark.parametrize("config", [
    InfillConfig(),
    InfillConfig(padding="border", mask_rule="argmax"),
    InfillConfig(padding="wrap", width=2, depth=1),
    InfillConfig(ops=("shift", "rotate"), dirichlet_alpha=0.5, beta_param=0.3),
])
def test_shapes_dtypes_and_label_set(config):
    image, mask = batch()
    mask[0, 0] = IGNORE
    out_image, out_mask = volume_infill(image, mask, N_CLASSES, config, gen())
    assert out_image.shape == image.shape and out_image.dtype == image.dtype
    assert out_mask.shape == mask.shape and out_mask.dtype == mask.dtype
    for i in range(mask.shape[0]):
        allowed = set(mask[i].unique().tolist()) | {0, IGNORE}
        assert set(out_mask[i].unique().tolist()) <= allowed


@pytest.mark.parametrize("config", [InfillConfig(probability=0.0), InfillConfig(density=0.0), InfillConfig(enabled=False)])
def test_off_returns_input_unchanged(config):
    image, mask = batch()
    out_image, out_mask = volume_infill(image, mask, N_CLASSES, config, gen())
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)


def test_probability_selects_whole_crops():
    image, mask = batch(b=16)
    out_image, out_mask = volume_infill(image, mask, N_CLASSES, InfillConfig(probability=0.5), gen(3))
    same = [torch.equal(out_image[i], image[i]) and torch.equal(out_mask[i], mask[i]) for i in range(16)]
    assert 0 < sum(same) < 16


def test_deterministic_for_a_fixed_generator():
    image, mask = batch()
    image = image + torch.randn(image.shape, generator=gen(9))
    a = volume_infill(image, mask, N_CLASSES, InfillConfig(), gen(1))
    b = volume_infill(image, mask, N_CLASSES, InfillConfig(), gen(1))
    c = volume_infill(image, mask, N_CLASSES, InfillConfig(), gen(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_foreground_priority_labels_every_copy():
    # the image is the particle indicator, so mixed intensity > 0 exactly where some copy lies
    image, mask = batch()
    out_image, out_mask = volume_infill(image, mask, N_CLASSES, InfillConfig(), gen(4))
    assert torch.equal(out_mask > 0, out_image[:, 0] > 0)
    assert (out_mask > 0).sum() > (mask > 0).sum()  # shifted copies were added and labelled


def test_argmax_rule_mixes_masks_like_images():
    # with one class the mixed one-hot foreground weight equals the mixed indicator image
    image, mask = batch()
    mask = mask.clamp_max(1)
    config = InfillConfig(mask_rule="argmax")
    out_image, out_mask = volume_infill(image, mask, 2, config, gen(5))
    assert torch.equal(out_mask == 1, out_image[:, 0] > 0.5)


def test_unknown_content_stays_ignored():
    image, _ = batch()
    mask = torch.full(image.shape[:1] + image.shape[2:], IGNORE)
    _, out_mask = volume_infill(image, mask, N_CLASSES, InfillConfig(), gen(6))
    assert (out_mask == IGNORE).all()


def test_border_padding_marks_shifted_in_voxels_ignored():
    image, mask = batch()
    config = InfillConfig(ops=("shift",), padding="border", mask_rule="foreground")
    _, out_mask = volume_infill(image, mask, N_CLASSES, config, gen(7))
    assert (out_mask == IGNORE).any()


def test_wrap_padding_preserves_the_mean():
    image = torch.randn(4, 1, 12, 12, 12, generator=gen(8))
    out, none = volume_infill(image, None, N_CLASSES, InfillConfig(padding="wrap"), gen(8))
    assert none is None
    torch.testing.assert_close(out.mean((1, 2, 3, 4)), image.mean((1, 2, 3, 4)), rtol=0, atol=1e-5)
    assert not torch.allclose(out, image)


def test_bad_config_is_rejected():
    with pytest.raises(SasiError):
        InfillConfig(mask_rule="max")
    with pytest.raises(SasiError):
        InfillConfig(ops=("shear",))
    with pytest.raises(SasiError):
        InfillConfig(density=1.5)
