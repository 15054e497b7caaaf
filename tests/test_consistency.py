import pytest
import torch

from sasi.errors import SasiError
from sasi.method import IGNORE
from sasi.method.consistency import (
    ConsistencyConfig,
    consistency_loss,
    consistency_target,
    sample_transform,
)
from sasi.method.losses import SegmentationLoss

SHAPE = (8, 8, 8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("seed", range(8))
def test_apply_then_invert_is_identity_on_the_valid_region(seed):
    t = sample_transform(gen(seed), SHAPE, max_shift=3)
    x = torch.randn(2, 3, *SHAPE, generator=gen(100 + seed))
    back = t.invert(t.apply(x))
    keep = t.inverse.valid_mask
    assert torch.equal(back[..., keep], x[..., keep])
    assert t.valid_mask.sum() == torch.prod(torch.tensor(SHAPE) - t.offset.abs()).item()


@pytest.mark.parametrize("seed", range(8))
def test_without_shift_invertible_everywhere(seed):
    t = sample_transform(gen(seed), SHAPE, max_shift=0)
    x = torch.randn(2, 1, *SHAPE, generator=gen(seed))
    assert t.valid_mask.all()
    assert torch.equal(t.invert(t.apply(x)), x)
    assert torch.equal(t.apply(t.invert(x)), x)


def test_flips_and_rotations_are_permutations():
    t = sample_transform(gen(1), SHAPE, max_shift=0)
    x = torch.arange(8**3).reshape(1, 1, *SHAPE)
    y = t.apply(x)
    assert torch.equal(y.flatten().sort().values, x.flatten())
    assert not torch.equal(y, x)


def test_non_cubic_crops_keep_their_shape():
    shape = (4, 6, 8)
    for seed in range(6):
        t = sample_transform(gen(seed), shape, max_shift=0)
        x = torch.randn(1, 1, *shape, generator=gen(seed))
        assert torch.equal(t.invert(t.apply(x)), x)


@pytest.mark.parametrize("seed", range(4))
def test_mask_and_image_transforms_agree(seed):
    t = sample_transform(gen(seed), SHAPE, max_shift=3)
    mask = torch.randint(0, 4, (2, *SHAPE), generator=gen(seed))
    out_mask = t.apply(mask)
    out_image = t.apply(mask.unsqueeze(1).float())[:, 0]
    valid = t.valid_mask
    assert out_mask.dtype == torch.long
    assert torch.equal(out_mask[:, valid].float(), out_image[:, valid])
    assert (out_mask[:, ~valid] == IGNORE).all() and (out_image[:, ~valid] == 0).all()


def sign_model(kernel=1):
    """Confident toy net: class 1 where x > 0, class 2 where x < 0."""
    model = torch.nn.Conv3d(1, 3, kernel, padding=kernel // 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
        centre = kernel // 2
        model.weight[1, 0, centre, centre, centre] = 50.0
        model.weight[2, 0, centre, centre, centre] = -50.0
        if kernel > 1:
            model.weight[1, 0, 0, 0, 0] = 30.0  # breaks flip/rotation equivariance
    return model


def sign_input(seed=0):
    return torch.randint(0, 2, (2, 1, *SHAPE), generator=gen(seed)).float() * 2 - 1


@pytest.mark.parametrize("target", ["hard", "soft"])
def test_equivariant_model_has_zero_consistency_loss(target):
    x = sign_input()
    for seed in range(4):
        t = sample_transform(gen(seed), SHAPE, max_shift=2)
        parts = consistency_loss(sign_model(1), x, t, SegmentationLoss(), target=target)
        assert parts.total.item() == pytest.approx(0.0, abs=1e-4)


def test_non_equivariant_model_has_positive_consistency_loss():
    t = sample_transform(gen(1), SHAPE, max_shift=0)
    parts = consistency_loss(sign_model(3), sign_input(), t, SegmentationLoss())
    assert parts.total.item() > 0.1


def test_gradients_do_not_flow_into_the_target():
    torch.manual_seed(0)
    model = torch.nn.Conv3d(1, 3, 3, padding=1)
    x = torch.randn(2, 1, *SHAPE)
    t = sample_transform(gen(2), SHAPE, max_shift=2)
    loss = SegmentationLoss()
    consistency_loss(model, x, t, loss, target="soft").total.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    target = t.apply(torch.softmax(model(x), 1)).detach()
    weight = t.valid_mask.float().expand(2, *SHAPE)
    loss(model(t.apply(x)), target, weight).total.backward()
    for got, want in zip(grads, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, want)


def test_confidence_threshold_ignores_uncertain_voxels():
    model = torch.nn.Conv3d(1, 3, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()  # uniform prediction: confidence 1/3 everywhere
    t = sample_transform(gen(0), SHAPE, max_shift=1)
    x = torch.randn(2, 1, *SHAPE)
    assert consistency_loss(model, x, t, SegmentationLoss(), confidence=0.5).total.item() == 0.0
    assert consistency_loss(model, x, t, SegmentationLoss(), confidence=0.0).total.item() > 0.1


def test_config_activity_window():
    config = ConsistencyConfig(enabled=True, active_fraction=0.5)
    assert config.active(2249, 4500) and not config.active(2250, 4500)  # supervised iterations
    assert config.active_in_ssl(0, 4500) and not config.active_in_ssl(2250, 4500)
    assert not ConsistencyConfig(enabled=True, during_pretrain=False).active_in_ssl(0, 4500)
    assert not ConsistencyConfig().active(0, 10) and not ConsistencyConfig().active_in_ssl(0, 10)
    with pytest.raises(SasiError):
        ConsistencyConfig(active_fraction=1.5)


@pytest.mark.parametrize("target", ["hard", "soft"])
def test_batched_target_matches_consistency_loss(target):
    # the loop runs f(x) and f(T(x)) in one pass and builds the target with consistency_target
    torch.manual_seed(0)
    model = torch.nn.Conv3d(1, 3, 3, padding=1)
    x = torch.randn(2, 1, *SHAPE)
    t = sample_transform(gen(3), SHAPE, max_shift=2)
    loss = SegmentationLoss()
    logits = model(torch.cat([x, t.apply(x)]))
    tgt, weight = consistency_target(logits[:2], t, target)
    torch.testing.assert_close(loss(logits[2:], tgt, weight).total, consistency_loss(model, x, t, loss, target).total)


def test_consistency_target_values():
    g = gen(4)
    logits = torch.randn(2, 3, *SHAPE, generator=g, requires_grad=True)
    t = sample_transform(gen(5), SHAPE, max_shift=2)
    soft, weight = consistency_target(logits, t, "soft")
    hard, _ = consistency_target(logits, t, "hard")
    sure, _ = consistency_target(logits, t, "hard", confidence=0.6)
    valid = t.valid_mask
    assert not soft.requires_grad and torch.equal(weight[0].bool(), valid)
    torch.testing.assert_close(soft.sum(1)[:, valid], torch.ones(2, int(valid.sum())))
    assert (soft.sum(1)[:, ~valid] == 0).all()
    torch.testing.assert_close(soft, t.apply(torch.softmax(logits.detach(), 1)))
    assert torch.equal(hard[:, valid], soft.argmax(1)[:, valid])
    low = soft.amax(1) < 0.6
    assert (sure[low & valid] == IGNORE).all() and torch.equal(sure[~low & valid], hard[~low & valid])
