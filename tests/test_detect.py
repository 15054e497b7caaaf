"""Detection: tiled segmentation equals one whole-volume pass; components match cc3d; centroids are exact."""

import importlib

import cc3d
import numpy as np
import pytest
import torch

from sasi.detect import (
    DetectConfig,
    ParticleGeometry,
    SegmentationMaps,
    foreground_components,
    maps_to_particles,
    propagate_components,
    segment,
    tile_starts,
)
from sasi.detect.picks import _first_per_cell
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


PER_CLASS = DetectConfig(mode="cc3d-per-class", min_size=2)


def maps_of(probabilities: np.ndarray) -> SegmentationMaps:
    """Maps of a (C, D, H, W) probability volume, as :func:`segment` stores them."""
    maps = SegmentationMaps.empty(probabilities.shape[1:], torch.device("cpu"))
    maps.put((slice(None),) * 3, torch.from_numpy(probabilities).float())
    return maps


def one_hot(labels: np.ndarray, n_classes: int, p: float = 0.9) -> np.ndarray:
    """Probabilities with ``p`` on each voxel's label and the rest spread evenly."""
    out = np.full((n_classes, *labels.shape), (1 - p) / (n_classes - 1), np.float32)
    np.put_along_axis(out, labels[None].astype(np.int64), p, axis=0)
    return out


def ball(shape, centre, radius) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius ** 2


GEOMETRY = ParticleGeometry(["a", "b"], 10.0, {"a": 60.0, "b": 60.0}, label_radius_scale=0.5)  # label r = 3 voxels


def picks_of(labels: np.ndarray, config: DetectConfig = DetectConfig(), geometry=GEOMETRY, probabilities=None):
    found = maps_to_particles(maps_of(one_hot(labels, 3) if probabilities is None else probabilities), geometry, "t",
                              config).particles
    return sorted(zip(found.column("label").to_pylist(), *(np.round(found.column(c).to_numpy() / 10, 2)
                                                               for c in "zyx"), found.column("score").to_pylist()))


def test_per_class_mode_centroids_scores_and_classes_of_two_blobs():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:5, 2:5, 2:5] = 1  # centre (3, 3, 3)
    labels[10:16, 12:14, 4:6] = 2  # centre (12.5, 12.5, 4.5)
    labels[18, 18, 18] = 1  # one voxel: dropped by min_size
    probabilities = one_hot(labels, 3, 0.5)
    probabilities[:, 10:16, 12:14, 4:6] = one_hot(np.full((6, 2, 2), 2), 3, 0.75)
    rows = picks_of(labels, PER_CLASS, probabilities=probabilities)
    assert [r[:4] for r in rows] == [("a", 3.0, 3.0, 3.0), ("b", 12.5, 12.5, 4.5)]
    assert [r[4] for r in rows] == pytest.approx([0.5, 0.75], abs=1e-3)


def test_a_particle_split_across_classes_is_one_pick_of_the_majority_class_at_its_centre():
    labels = np.zeros((24, 24, 24), np.uint8)
    inside = ball(labels.shape, (12, 12, 12), 3.2)
    labels[inside] = 1
    labels[inside & (np.indices(labels.shape)[2] > 13)] = 2  # a cap of the particle painted class b
    assert len(picks_of(labels, PER_CLASS)) == 2  # the paper's rule: one pick per fragment, both off-centre
    rows = picks_of(labels)
    assert len(rows) == 1 and rows[0][0] == "a"
    assert np.allclose(rows[0][1:4], (12, 12, 12), atol=0.01)


def test_touching_particles_of_two_classes_stay_two_picks_at_their_centres():
    shape = (24, 24, 32)
    labels = np.zeros(shape, np.uint8)
    labels[ball(shape, (12, 12, 10), 3.2)] = 1
    labels[ball(shape, (12, 12, 16.5), 3.2)] = 2  # spheres touch: one foreground component
    probabilities = one_hot(labels, 3)
    for centre in ((12, 12, 10), (12, 12, 16.5)):  # the network is surest at particle centres
        near = ball(shape, centre, 1.5)
        probabilities[0][near] = 0.01
    rows = picks_of(labels, probabilities=probabilities)
    assert [r[0] for r in rows] == ["a", "b"]
    assert np.allclose([r[3] for r in rows], (10, 16.5), atol=0.6)
    merged = picks_of(labels, DetectConfig(split_factor=10.0), probabilities=probabilities)
    assert len(merged) == 1  # without splitting, the pair is one component


def test_specks_are_dropped_and_close_picks_merge():
    labels = np.zeros((24, 24, 24), np.uint8)
    labels[ball(labels.shape, (6, 6, 6), 3.2)] = 1
    labels[20, 20, 20] = 2  # a 1-voxel speck: far below 0.2 × the label sphere (113 voxels)
    labels[ball(labels.shape, (14, 14, 13), 2.0)] = 1  # two fragments 5.5 voxels apart, not touching:
    labels[ball(labels.shape, (14, 14, 18.5), 2.0)] = 1  # closer than one particle radius (6 voxels), so one pick
    assert foreground_components(torch.from_numpy(labels))[1].max() == 3  # four components
    rows = picks_of(labels)
    assert [r[1:4] for r in rows if r[1] > 10] in ([(14.0, 14.0, 13.0)], [(14.0, 14.0, 18.5)])
    assert len(rows) == 2
    assert len(picks_of(labels, DetectConfig(merge_factor=0.0, min_size_fraction=0.0))) == 4


def test_a_flat_top_gives_one_seed_candidate_per_cube_not_one_per_voxel():
    """Saturated float16 probabilities make every voxel of a large blob a tied peak (inference on a 512³
    tomogram stalled in greedy suppression over millions of them); strict peaks are never thinned."""
    xyz = np.indices((12, 12, 12)).reshape(3, -1).T
    ids = np.zeros(len(xyz), np.int64)
    assert _first_per_cell(xyz, np.ones(len(xyz), np.float32), ids, 4).sum() == 27
    assert _first_per_cell(xyz, np.ones(len(xyz), np.float32), xyz[:, 0] % 2, 4).sum() == 54  # per component
    assert _first_per_cell(xyz, np.arange(len(xyz), dtype=np.float32), ids, 4).all()
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[4:36, 4:36, 4:36] = 1
    rows = picks_of(labels, probabilities=one_hot(labels, 3, p=1.0))
    centres = np.array([r[1:4] for r in rows])
    assert len(rows) > 8 and np.ptp(centres, axis=0).min() > 15  # split across the whole blob
    assert np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(len(rows), 1)].min() >= 3


def test_empty_segmentation_gives_no_picks():
    assert picks_of(np.zeros((12, 12, 12), np.uint8)) == []
    assert picks_of(np.zeros((12, 12, 12), np.uint8), PER_CLASS) == []


def test_picks_come_best_first_and_respect_min_score():
    labels = np.zeros((24, 24, 24), np.uint8)
    labels[ball(labels.shape, (6, 6, 6), 3.2)] = 1
    labels[ball(labels.shape, (17, 17, 17), 3.2)] = 2
    probabilities = one_hot(labels, 3, 0.6)
    probabilities[:, 14:21, 14:21, 14:21] = one_hot(labels[14:21, 14:21, 14:21], 3, 0.95)
    maps = maps_of(probabilities)
    found = maps_to_particles(maps, GEOMETRY, "t").particles
    assert found.column("label").to_pylist() == ["b", "a"]
    assert maps_to_particles(maps, GEOMETRY, "t", min_score=0.9).particles.column("label").to_pylist() == ["b"]


def test_bad_detect_settings_are_one_line_errors():
    with pytest.raises(SasiError, match="mode"):
        DetectConfig(mode="meanshift")
    with pytest.raises(SasiError, match="threshold"):
        DetectConfig(threshold=1.5)
    with pytest.raises(SasiError, match="class_source must be one of"):
        DetectConfig(class_source="colour")


def _whole_pass(net, volume):
    d, h, w = ((-s) % 4 for s in volume.shape)
    padded = torch.nn.functional.pad(volume[None, None], (0, w, 0, h, 0, d), mode="reflect")
    with torch.no_grad():
        probabilities = torch.softmax(net(padded)[0], 0)
    crop = tuple(slice(0, s) for s in volume.shape)
    return probabilities.argmax(0)[crop].to(torch.uint8), (1 - probabilities[0])[crop]


def test_tiles_with_the_receptive_context_equal_one_whole_volume_pass():
    torch.manual_seed(0)
    net = build_model("deepfinder", 3, channels=(4, 6, 8)).eval()
    for conv in (m for m in net.modules() if isinstance(m, torch.nn.Conv3d)):  # variance-preserving: outputs vary
        torch.nn.init.kaiming_normal_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    volume = torch.randn(150, 101, 158)  # not multiples of 4: reflect-padded like the whole pass
    best, foreground = _whole_pass(net, volume)
    maps = segment(net, volume, tile=112)  # margin = net.context = 36: 2×1×3 tiles
    assert (torch.bincount(best.flatten(), minlength=3) > 0.1 * best.numel()).sum() >= 2  # the argmax varies
    assert torch.equal(maps.labels, best)
    assert torch.allclose(maps.foreground.float(), foreground, atol=1e-3)
    seams = segment(net, volume, tile=112, margin=8)  # seams inside the receptive field differ
    assert not torch.allclose(seams.foreground.float(), foreground, atol=1e-3)


def test_tiles_stay_within_the_index_limit_of_cudnn_convolutions(monkeypatch):
    segment_module = importlib.import_module("sasi.detect.segment")  # the module, not sasi.detect's segment()
    net = build_model("deepfinder", 3, channels=(4, 6, 8)).eval()
    assert segment_module.widest_activation(net) == 10  # the 6 + 4 channels concatenated at full resolution
    assert segment_module.max_tile_edge(build_model("deepfinder", 14)) == 296  # 80 channels: 296³·80 < 2³¹
    monkeypatch.setattr(segment_module, "INDEX_LIMIT", 10 * 40**3)  # as if 40³ were the largest safe tile
    blocks = []
    net.register_forward_pre_hook(lambda module, args: blocks.append(tuple(args[0].shape[2:])))
    volume = torch.randn(60, 52, 70)
    maps = segment(net, volume, tile=512, margin=8)  # asked for one whole-volume tile
    assert blocks[0] == (16, 16, 16) and len(blocks) > 2  # the probe, then the tiles
    assert max(max(b) for b in blocks[1:]) == 40 and maps.labels.shape == volume.shape


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


def test_auto_tile_is_the_largest_that_fits_the_free_memory():
    from sasi.detect.memory import detection_gb, largest_tile

    shape = (512, 512, 512)
    assert largest_tile(139.0, shape) == 512  # an empty H200 holds the whole volume as one tile (91 GB)
    tile = largest_tile(12.0, shape)  # a 12 GB budget: about the default tile
    assert tile % 4 == 0 and 240 <= tile <= 272 and detection_gb(tile, shape) <= 0.85 * 12.0 < detection_gb(tile + 4, shape)
    assert largest_tile(0.1, shape) == 64  # never below the floor (the run may then be out of memory, as asked)
    assert largest_tile(139.0, (100, 200, 201)) == 204  # whole volume: its longest edge on the pooling grid
