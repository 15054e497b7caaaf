import math

import pytest
import torch

from sasi.method.contrastive import contrastive_loss, nt_xent, retrieval_accuracy
from sasi.model import DeepFinderUNet, ProjectionHead


def reference_nt_xent(z1, z2, tau):
    z = torch.cat([z1, z2]).double()
    n2 = z.shape[0]
    b = n2 // 2
    total = 0.0
    for i in range(n2):
        positive = (i + b) % n2
        sims = [torch.dot(z[i], z[k]) / (z[i].norm() * z[k].norm()) / tau for k in range(n2)]
        denominator = sum(math.exp(sims[k].item()) for k in range(n2) if k != i)
        total += -math.log(math.exp(sims[positive].item()) / denominator)
    return total / n2


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_nt_xent_matches_loop_reference(tau):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert nt_xent(z1, z2, tau).item() == pytest.approx(reference_nt_xent(z1, z2, tau), rel=1e-5)


def test_nt_xent_prefers_matching_views():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 16, generator=g)
    assert nt_xent(z, z + 0.01 * torch.randn(6, 16, generator=g)) < nt_xent(z, z.roll(1, 0))


def test_contrastive_loss_trains_the_encoder():
    torch.manual_seed(0)
    model = DeepFinderUNet(2)
    head = ProjectionHead(DeepFinderUNet.embedding_dim(8))
    views = torch.randn(2, 3, 1, 8, 8, 8)
    loss = contrastive_loss(model, head, views[0], views[1])
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert model.enc1[0].weight.grad.abs().sum() > 0
    assert model.head.weight.grad is None  # the decoder is not used


def test_nt_xent_stays_float32_under_autocast():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = nt_xent(z1, z2)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, nt_xent(z1, z2))


def test_retrieval_accuracy_counts_partners_found():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(8, 16, generator=g)
    assert retrieval_accuracy(z, z + 0.01 * torch.randn(8, 16, generator=g)).item() == 1.0
    assert retrieval_accuracy(z, -z).item() == 0.0  # each partner is the farthest embedding
    z2 = z.clone()
    z2[:2] = torch.randn(2, 16, generator=g) * 100  # two pairs broken: at most 2 × 2 anchors miss
    acc = retrieval_accuracy(z, z2).item()
    assert 0.7 <= acc < 1.0
