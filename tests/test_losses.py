import math

import pytest
import torch
import torch.nn.functional as F

from sasi.method import IGNORE
from sasi.method.losses import LossConfig, SegmentationLoss


def labels(shape=(2, 4, 4, 4), n_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(n_classes, shape, generator=g)


def confident_logits(target, n_classes, scale=40.0):
    return scale * F.one_hot(target.clamp_min(0), n_classes).movedim(-1, 1).float()


@pytest.mark.parametrize("n_classes", [3, 5])  # 5: two classes absent from the target
def test_perfect_prediction_is_zero(n_classes):
    target = labels(n_classes=3)
    parts = SegmentationLoss()(confident_logits(target, n_classes), target)
    assert parts.dice.item() == pytest.approx(0.0, abs=1e-6)
    assert parts.focal.item() == pytest.approx(0.0, abs=1e-6)
    assert parts.total.item() == pytest.approx(0.0, abs=1e-5)


def test_uniform_prediction_known_value():
    c = 3
    target = labels(n_classes=c)
    n = target.numel()
    counts = torch.bincount(target.flatten(), minlength=c).double()
    dice = 1 - (2 * counts / c / (n / c + counts)).mean().item()
    focal = (1 - 1 / c) ** 2 * math.log(c)
    parts = SegmentationLoss(smooth=0.0)(torch.zeros(2, c, 4, 4, 4), target)
    assert parts.dice.item() == pytest.approx(dice, rel=1e-5)
    assert parts.focal.item() == pytest.approx(focal, rel=1e-5)
    assert parts.total.item() == pytest.approx(20 * dice + focal, rel=1e-5)


def test_gamma_zero_focal_is_cross_entropy():
    target = labels()
    target[0, 0] = IGNORE
    logits = torch.randn(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    parts = SegmentationLoss(gamma=0.0)(logits, target)
    torch.testing.assert_close(parts.focal, F.cross_entropy(logits, target, ignore_index=IGNORE))


def test_ignore_voxels_do_not_change_the_loss():
    target = labels()
    logits = torch.randn(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    loss = SegmentationLoss()
    ignored = target.clone()
    ignored[..., 2:] = IGNORE
    reference = loss(logits[..., :2], target[..., :2])
    out = loss(logits, ignored)
    perturbed = logits.clone()
    perturbed[..., 2:] = 100 * torch.randn_like(perturbed[..., 2:])
    for a, b in [(out, reference), (loss(perturbed, ignored), reference)]:
        torch.testing.assert_close(a.total, b.total)
        torch.testing.assert_close(a.dice, b.dice)
        torch.testing.assert_close(a.focal, b.focal)


def test_soft_targets_and_weights_match_hard_targets_and_ignore():
    target = labels()
    logits = torch.randn(2, 3, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    loss = SegmentationLoss()
    soft = F.one_hot(target, 3).movedim(-1, 1).float()
    torch.testing.assert_close(loss(logits, soft).total, loss(logits, target).total)
    weight = torch.ones(2, 4, 4, 4)
    weight[1] = 0.0
    ignored = target.clone()
    ignored[1] = IGNORE
    expected = loss(logits, ignored).total
    torch.testing.assert_close(loss(logits, soft, weight).total, expected)
    torch.testing.assert_close(loss(logits, target, weight).total, expected)


def test_all_ignored_gives_zero_and_finite_gradients():
    logits = torch.randn(1, 3, 4, 4, 4, requires_grad=True)
    parts = SegmentationLoss()(logits, torch.full((1, 4, 4, 4), IGNORE))
    parts.total.backward()
    assert parts.total.item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(logits.grad).all()


def test_loss_is_differentiable_and_config_builds():
    logits = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    loss = SegmentationLoss.from_config(LossConfig(dice_weight=2.0, focal_weight=3.0, gamma=1.5))
    parts = loss(logits, labels())
    torch.testing.assert_close(parts.total, 2 * parts.dice + 3 * parts.focal)
    parts.total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_soft_rows_below_one_weight_the_voxel():
    # a mixed target whose rows sum to s < 1 (unknown content mixed in) = the renormalised target at weight s
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 3, 4, 4, 4, generator=g)
    probs = torch.softmax(torch.randn(2, 3, 4, 4, 4, generator=g), 1)
    known = torch.rand(2, 4, 4, 4, generator=g)
    known[0, 0] = 0.0
    loss = SegmentationLoss()
    got = loss(logits, probs * known.unsqueeze(1))
    want = loss(logits, probs, known)
    torch.testing.assert_close(got.total, want.total)
    zero_row = torch.zeros(1, 3, 4, 4, 4)
    zero_row[..., 2:] = probs[:1, ..., 2:]
    torch.testing.assert_close(loss(logits[:1], zero_row).total, loss(logits[:1, ..., 2:], probs[:1, ..., 2:]).total)


def test_soft_target_is_minimised_by_matching_it():
    # Dice + focal on a mixed (non one-hot) target: gradient descent on the logits moves the prediction toward it
    target = torch.tensor([0.6, 0.3, 0.1]).view(1, 3, 1, 1, 1).expand(1, 3, 4, 4, 4).contiguous()
    logits = torch.zeros(1, 3, 4, 4, 4, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    loss = SegmentationLoss()
    first = loss(logits, target).total.item()
    for _ in range(100):
        opt.zero_grad()
        loss(logits, target).total.backward()
        opt.step()
    probs = torch.softmax(logits, 1)
    assert loss(logits, target).total.item() < first
    assert probs[0, :, 0, 0, 0].argmax() == 0 and probs[0, 2].max() < probs[0, 1].min()
