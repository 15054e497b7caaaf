"""Detection: tiled segmentation equals one whole-volume pass; components match cc3d; centroids are exact."""

import cc3d
import numpy as np
import pytest
import torch

from sasi.detect import components_to_particles, foreground_components, propagate_components, segment, tile_starts
from sasi.errors import SasiError
from sasi.model import build_model


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_propagated_components_partition_like_cc3d(connectivity):
    rng = np.random.default_rng(connectivity)
    for _ in range(10):
        shape = tuple(int(s) for s in rng.integers(3, 16, 3))
        seg = ((rng.random(shape) < rng.uniform(0.05, 0.6)) * rng.integers(1, 4, shape)).astype(np.uint8)
        reference = cc3d.connected_components(seg, connectivity=connectivity)
        coords, component = propagate_components(torch.from_numpy(seg), connectivity)
        ref = reference[tuple(coords.numpy().T)]
        pairs = set(zip(component.tolist(), ref.tolist()))
        assert len(pairs) == len(set(ref.tolist())) == len(set(component.tolist())) == reference.max()
        cpu_coords, cpu_component = foreground_components(torch.from_numpy(seg), connectivity)
        assert torch.equal(cpu_coords, coords)
        assert len(set(zip(cpu_component.tolist(), component.tolist()))) == reference.max()


def test_centroids_scores_and_classes_of_two_blobs():
    labels = torch.zeros(20, 20, 20, dtype=torch.uint8)
    labels[2:5, 2:5, 2:5] = 1  # centre (3, 3, 3)
    labels[10:16, 12:14, 4:6] = 2  # centre (12.5, 12.5, 4.5)
    labels[18, 18, 18] = 1  # one voxel: dropped by min_size
    confidence = torch.full(labels.shape, 0.5, dtype=torch.float16)
    confidence[10:16, 12:14, 4:6] = 0.75
    found = components_to_particles(labels, confidence, ["a", "b"], 10.0, "t", min_size=2).particles
    rows = sorted(zip(found.column("label").to_pylist(), found.column("z").to_pylist(),
                      found.column("y").to_pylist(), found.column("x").to_pylist(), found.column("score").to_pylist()))
    assert rows == [("a", 30.0, 30.0, 30.0, 0.5), ("b", 125.0, 125.0, 45.0, 0.75)]


def _whole_pass(net, volume):
    d, h, w = ((-s) % 4 for s in volume.shape)
    padded = torch.nn.functional.pad(volume[None, None], (0, w, 0, h, 0, d), mode="reflect")
    with torch.no_grad():
        conf, best = torch.softmax(net(padded)[0], 0).max(0)
    crop = tuple(slice(0, s) for s in volume.shape)
    return best[crop].to(torch.uint8), conf[crop]


def test_tiles_with_the_receptive_context_equal_one_whole_volume_pass():
    torch.manual_seed(0)
    net = build_model("deepfinder", 3, channels=(4, 6, 8)).eval()
    for conv in (m for m in net.modules() if isinstance(m, torch.nn.Conv3d)):  # variance-preserving: outputs vary
        torch.nn.init.kaiming_normal_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    volume = torch.randn(150, 101, 158)  # not multiples of 4: reflect-padded like the whole pass
    best, conf = _whole_pass(net, volume)
    labels, confidence = segment(net, volume, tile=112)  # margin = net.context = 36: 2×1×3 tiles
    assert (torch.bincount(best.flatten(), minlength=3) > 0.1 * best.numel()).sum() >= 2  # the argmax varies
    assert torch.equal(labels, best)
    assert torch.allclose(confidence.float(), conf, atol=1e-3)
    _, seams = segment(net, volume, tile=112, margin=8)  # seams inside the receptive field differ
    assert not torch.allclose(seams.float(), conf, atol=1e-3)


@pytest.mark.parametrize("size,tile,margin", [(512, 256, 36), (512, 320, 36), (92, 256, 36), (440, 80, 36), (200, 96, 8)])
def test_balanced_tiles_cover_the_axis_on_the_pooling_grid(size, tile, margin):
    edge, starts = tile_starts(size, tile, margin)
    assert edge <= tile and edge % 4 == 0 and all(s % 4 == 0 for s in starts)
    assert starts[0] == 0 and starts[-1] + edge == size
    kept = [(0 if s == 0 else s + margin, s + edge if s + edge == size else s + edge - margin) for s in starts]
    assert all(a[1] >= b[0] for a, b in zip(kept, kept[1:]))  # interiors abut or overlap: every voxel kept


def test_tile_without_interior_is_a_clear_error():
    with pytest.raises(SasiError, match="no interior"):
        tile_starts(200, 64, 36)
