import pytest
import torch

from sasi.errors import SasiError
from sasi.model import (
    MODELS,
    DeepFinderUNet,
    ProjectionHead,
    build_model,
    register_model,
)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_deepfinder_parameter_count_matches_paper():
    assert n_params(build_model("deepfinder", 4)) == 903_060


@pytest.mark.parametrize("size", [24, 48])
def test_output_and_bottleneck_shapes(size):
    torch.manual_seed(0)
    model = DeepFinderUNet(n_classes=3)
    x = torch.randn(1, 1, size, size, size)
    with torch.no_grad():
        assert model(x).shape == (1, 3, size, size, size)
        assert model.encode(x).shape == (1, 64, size // 4, size // 4, size // 4)
    assert DeepFinderUNet.embedding_dim(size) == 64 * (size // 4) ** 3


def test_embedding_dim_matches_paper():
    assert DeepFinderUNet.embedding_dim(24) == 13_824


def test_even_kernel_pads_after_like_keras():
    model = DeepFinderUNet(n_classes=2)
    pad, conv = model.up2[0], model.up2[1]
    x = torch.zeros(1, 64, 4, 4, 4)
    x[0, 0, 2, 2, 2] = 1.0
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[0, 0, 1, 1, 1] = 1.0  # output[p] = x[p + 1] when no padding comes first
        y = conv(pad(x))
    assert y.shape[2:] == (4, 4, 4)
    assert y[0, 0].nonzero().tolist() == [[1, 1, 1]]


def test_rejects_sizes_not_divisible_by_four():
    with pytest.raises(SasiError):
        DeepFinderUNet(2)(torch.zeros(1, 1, 22, 24, 24))


def test_unknown_model_is_a_one_line_error():
    with pytest.raises(SasiError) as err:
        build_model("no-such-net", 3)
    assert "\n" not in str(err.value) and "deepfinder" in str(err.value)


def test_register_model_adds_and_refuses_duplicates():
    @register_model("tiny-test")
    class Tiny(torch.nn.Module):
        def __init__(self, n_classes: int, width: int = 2):
            super().__init__()
            self.conv = torch.nn.Conv3d(1, n_classes, 1)
            self.width = width

    try:
        built = build_model("tiny-test", 5, width=7)
        assert isinstance(built, Tiny) and built.conv.out_channels == 5 and built.width == 7
        with pytest.raises(SasiError):
            register_model("tiny-test")(Tiny)
    finally:
        MODELS.pop("tiny-test")


@pytest.mark.parametrize("in_features", [None, 64 * 2 * 2 * 2])
def test_projection_head(in_features):
    head = ProjectionHead(in_features, out_features=128)
    features = torch.randn(3, 64, 2, 2, 2)
    z = head(features)
    assert z.shape == (3, 128)
    expected = head.linear(torch.relu(features.flatten(1)))
    torch.testing.assert_close(z, expected)


def test_projection_pass_skips_the_decoder_and_changes_nothing():
    """The SSL step without a consistency term asks for the projection alone: same values, same gradients."""
    from sasi.train.network import SasiNet

    torch.manual_seed(0)
    net = SasiNet.build("deepfinder", 3, 24, 16, channels=(4, 6, 8))
    x = torch.randn(4, 1, 24, 24, 24)
    _, z = net(x, project=True)
    z.square().sum().backward()
    full = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    decoded = []
    net.backbone.dec1.register_forward_hook(lambda *args: decoded.append(1))
    alone = net(x, project=True, segment=False)
    alone.square().sum().backward()
    assert torch.equal(alone, z) and not decoded
    grads = {n: p.grad for n, p in net.named_parameters() if p.grad is not None}
    assert grads.keys() == full.keys() and all(torch.equal(grads[n], full[n]) for n in full)


def test_logits_of_a_kept_region_equal_the_whole_pass_there():
    torch.manual_seed(0)
    net = build_model("deepfinder", 3, channels=(4, 6, 8)).eval()
    x = torch.randn(1, 1, 48, 40, 56)
    keep = (slice(8, 40), slice(0, 24), slice(20, 56))  # inside, at the low edge, at the high edge
    with torch.no_grad():
        whole, region = net(x)[(..., *keep)], net(x, keep=keep)
    assert region.shape == whole.shape and torch.allclose(region, whole, atol=1e-5)
