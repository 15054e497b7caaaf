"""Detection: tiled segmentation equals one whole-volume pass; components match cc3d; centroids are exact."""

import cc3d
import numpy as np
import pytest
import torch

from sasi.detect import components_to_particles, foreground_components, propagate_components, segment
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


def test_tiles_match_one_whole_volume_pass():
    torch.manual_seed(0)
    net = build_model("deepfinder", 3, channels=(4, 6, 8)).eval()
    volume = torch.randn(40, 44, 48)
    labels, confidence = segment(net, volume, tile=24, margin=6)
    with torch.no_grad():
        conf, best = torch.softmax(net(volume[None, None])[0], 0).max(0)
    interior = (slice(6, -6),) * 3  # zero padding of the whole pass differs from the tiles only at the border
    assert (labels[interior] == best[interior].to(torch.uint8)).float().mean() > 0.999
    assert torch.allclose(confidence[interior].float(), conf[interior], atol=2e-3)
