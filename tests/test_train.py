"""End-to-end: the pure-PyTorch loop learns to find large particles on CPU; predict/CLI errors."""

import subprocess
import sys
from functools import partial

import numpy as np
import pytest

from sasi.config import from_dict
from sasi.train.checkpoint import score_checkpoint
from sasi.simulate import SimulationConfig, simulate_dataset
from sasi.train.config import SasiConfig
from sasi.train.checkpoint import load_checkpoint
from sasi.train.loop import Trainer


@pytest.fixture(scope="module")
def globes(tmp_path_factory):
    """One large, well-separated class at high SNR: learnable in a few dozen CPU iterations."""
    out = tmp_path_factory.mktemp("globes") / "data"
    config = SimulationConfig(shape=(32, 96, 96), snr=2.0, density=0.08, classes=("globe",))
    return simulate_dataset(out, config, {"train": 1, "val": 1}, seed=3, progress=False)


@pytest.fixture(scope="module")
def trained(globes, tmp_path_factory):
    config = from_dict(SasiConfig, {
        "data": {"dataset": str(globes.root), "shots": 3, "patch": 16},
        "model": {"channels": [8, 12, 16]},
        "train": {"iterations": 60, "eval_every": 0, "batch_size": 4, "lr": 3e-3},
    })
    trainer = Trainer(config, progress=False)
    result = trainer.run()
    folder = tmp_path_factory.mktemp("ckpt")
    trainer.save(folder)
    return result, folder


def test_learns_to_find_large_particles(globes, trained):
    result, folder = trained
    scores, picks = score_checkpoint(folder, globes, "val", "cpu")  # the cut-off chosen in training's validation
    print(f"val class F1 {scores.class_f1_pooled:.3f} ({scores.picks} picks, {scores.truth} particles)")
    assert scores.class_f1_pooled > 0.5 and 0.7 <= scores.picks_per_truth <= 1.3
    assert result.final["val_class_f1"] == pytest.approx(scores.class_f1_pooled)
    assert scores.min_score == result.final["val_min_score"]


def test_checkpoint_round_trip_and_resume(globes, trained, tmp_path):
    result, folder = trained
    net, config, state = load_checkpoint(folder)
    assert state["step"] == 60 and state["classes"] == ["globe"]
    x = np.random.default_rng(0).normal(size=(1, 1, 16, 16, 16)).astype(np.float32)
    import torch

    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(x)).numpy(),
                                   result.model.cpu().eval()(torch.from_numpy(x)).numpy(), atol=1e-5)


def _cli(*args):
    return subprocess.run([sys.executable, "-c", "from sasi.cli import main; main()", *args],
                          capture_output=True, text=True)


def test_predict_cli(globes, trained, tmp_path):
    _, folder = trained
    tomo = globes.root / globes.names("val")[0] / "tomogram.mrc"
    out = tmp_path / "picks.star"
    run = _cli("predict", str(folder), str(tomo), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert out.exists() and "particles" in run.stdout
    assert "tiles of at most 256³" in run.stdout.replace("\n", " ")  # detect.tile on CPU, under the cap of 296


def test_predict_bad_inputs_one_line(globes, trained, tmp_path):
    _, folder = trained
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"\x00" * 100)
    run = _cli("predict", str(folder), str(bad), "--out", str(tmp_path / "p.parquet"))
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "not a readable MRC" in run.stderr
    from sasi.io import write_mrc

    write_mrc(tmp_path / "v7.mrc", np.zeros((16, 16, 16), np.float32), voxel_size=7.0)
    run = _cli("predict", str(folder), str(tmp_path / "v7.mrc"), "--out", str(tmp_path / "p.parquet"))
    assert run.returncode == 1 and "voxel size 7 Å does not match the expected 10 Å" in run.stderr
    assert not (tmp_path / "p.parquet").exists()


# ---- issue 17: the loop with ISS + infill + consistency on, on a small two-class tomogram -----------------------

@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two classes (2 ring7, 1 tetra) in a 24×40×40 train tomogram; no val split (no validation)."""
    out = tmp_path_factory.mktemp("pair") / "data"
    config = SimulationConfig(shape=(24, 40, 40), snr=1.0, density=0.2, classes=("ring7", "tetra"))
    return simulate_dataset(out, config, {"train": 1}, seed=1, progress=False)


def _ssl_trainer(pair, preset, **overrides):
    from sasi.config import deep_update
    from sasi.presets import preset_config

    small = {"data": {"dataset": str(pair.root), "shots": 1, "patch": 16}, "model": {"channels": [4, 6, 8]},
             "train": {"iterations": 4, "eval_every": 0, "batch_size": 2, "log_every": 1},
             "pretrain": {"epochs": 1, "batch_size": 4}, "consistency": {"active_fraction": 1.0}}
    trainer = Trainer(preset_config(preset, deep_update(small, overrides)), progress=False)
    trainer.data.windows = trainer.data.windows[::4]  # 8 windows: ISS = 2 steps (CPU time)
    return trainer


@pytest.mark.parametrize("preset", ["sasi", "sasi-faithful"])
def test_trains_with_iss_infill_and_consistency(pair, preset):
    import math

    trainer = _ssl_trainer(pair, preset)
    result = trainer.run()
    config = trainer.config
    assert config.infill.enabled and config.consistency.enabled and trainer.ssl_steps == trainer.iss_steps() == 2
    final = result.final
    assert final["iteration"] == 4 and all(math.isfinite(v) for v in final.values())
    assert final["validate_s"] > 0  # each validation's own time is reported
    assert 0 < final["train_consistency"] and 0 <= final["train_pred_foreground"] <= 1
    assert 0 < final["train_label_foreground"] < 1 and 0 <= final["train_ssl_top1"] <= 1
    assert final["train_ssl_contrastive"] > 0
    assert final["train_iss_bottleneck_std_before"] != final["train_iss_bottleneck_std_after"]  # ISS changed the encoder
    assert ("train_ssl_consistency" in final) == config.consistency.during_pretrain
    # Adam's step count on an encoder weight: the ISS steps carry over unless the optimiser is reset after ISS
    encoder = trainer.net.backbone.enc1[0].weight
    assert int(trainer.optimiser.state[encoder]["step"]) == 4 + (0 if config.pretrain.reset_optimiser else 2)


def test_independent_views_do_not_share_the_window(pair):
    import torch

    no_mix = {"infill": {"density": 0.0}}  # isolate the views from the infill mix
    same = _ssl_trainer(pair, "sasi-star", **no_mix)
    v1, v2 = same.ssl_views()
    assert torch.equal(v1, v2)  # the paper: one window, shared noise voxel for voxel
    for views in ({"view_shift": 0.25}, {"view_rotate": True}, {"view_noise": 0.5}):
        trainer = _ssl_trainer(pair, "sasi-star", **no_mix, pretrain=views)
        v1, v2 = trainer.ssl_views()
        assert v1.shape == v2.shape == (4, 1, 16, 16, 16) and not torch.allclose(v1, v2, atol=1e-3)
        noise = views.get("view_noise", 0.0)
        if noise:
            assert (v1 - v2).std().item() == pytest.approx(noise * 2**0.5, rel=0.1)


def _losses(trainer, steps: int = 3) -> list[float]:
    """Losses of ``steps`` SSL steps, then consistency and plain supervised steps, from one trainer."""
    out = [float(trainer.ssl_step()["ssl_contrastive"]) for _ in range(steps)]
    for _ in range(2 * steps):
        out.append(float(trainer.supervised_step()["loss"]))
        trainer.step += 1
    return out


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not __import__("torch").cuda.is_available(), reason="CUDA graphs need a GPU"))])
def test_cuda_graphs_leave_the_losses_alone(pair, device):
    """train.cuda_graphs (network passes) and train.graph_step (whole SSL and supervised steps) replay the same maths:
    the same seed gives the same losses. On CPU there are no graphs, but the whole-step path still runs its fixed
    buffers (eager warm-up, 'capture', replays from copied draws)."""
    import torch

    from sasi.train.step_graph import StepGraph

    torch.backends.cudnn.deterministic = True  # the same conv algorithms in every run
    runs = {}
    for mode, train in {"eager": {"cuda_graphs": False, "graph_step": False},  # both default on
                        "network": {"cuda_graphs": True, "graph_step": False},
                        "step": {"cuda_graphs": True, "graph_step": True}}.items():
        train = {"device": device, "cudnn_benchmark": False, "iterations": 8, **train}
        trainer = _ssl_trainer(pair, "sasi", train=train, consistency={"active_fraction": 0.5})
        assert (trainer.graphed is not None) == (mode != "eager" and device == "cuda")
        assert (trainer.step_graph is not None) == (mode == "step" and device == "cuda")
        if mode == "step" and device == "cpu":
            trainer.step_graph = StepGraph(lambda d, t=trainer: t.supervised_update(d, t.model), trainer.device,
                                           warmup=1, capture=False)
            trainer.ssl_graph = StepGraph(lambda d, t=trainer: t.ssl_update(d, partial(t.model, project=True)),
                                          trainer.device, warmup=1, capture=False)
        runs[mode] = _losses(trainer, steps=4)  # 4 SSL, 4 consistency, 4 plain steps: warm-up, capture, replays
        if trainer.step_graph is not None:
            assert set(trainer.step_graph.graphs) == {True, False} and set(trainer.ssl_graph.graphs) == {True}
            trainer.ssl_graph.reset()  # e.g. after the optimiser reset: warm up and capture again
            assert not trainer.ssl_graph.graphs and not trainer.ssl_graph.eager_runs
    torch.backends.cudnn.deterministic = False
    assert all(np.isfinite(runs["step"])) and len(runs["step"]) == 12
    np.testing.assert_allclose(runs["network"], runs["eager"], rtol=1e-4)
    np.testing.assert_allclose(runs["step"], runs["eager"], rtol=1e-4)


# ---- classes from shape (detect.class_source), chosen on the validation tomogram -----------------------------

@pytest.fixture(scope="module")
def two_classes(tmp_path_factory):
    out = tmp_path_factory.mktemp("two") / "data"
    config = SimulationConfig(shape=(32, 64, 64), snr=2.0, density=0.1, classes=("globe", "tetra"))
    return simulate_dataset(out, config, {"train": 1, "val": 1}, seed=5, progress=False)


@pytest.mark.parametrize("class_source", ["auto", "shape"])
def test_class_source_is_chosen_on_validation_and_kept_in_the_checkpoint(two_classes, class_source, tmp_path):
    from dataclasses import replace

    from sasi.errors import SasiError
    from sasi.train.checkpoint import checkpoint_detection

    config = from_dict(SasiConfig, {
        "data": {"dataset": str(two_classes.root), "shots": 2, "patch": 16}, "model": {"channels": [4, 6, 8]},
        "train": {"iterations": 8, "eval_every": 0, "batch_size": 2}, "detect": {"class_source": class_source}})
    trainer = Trainer(config, progress=False)
    final = trainer.run().final
    trainer.save(tmp_path)
    chosen = trainer.calibration["class_source"]
    if class_source == "auto":  # both scored; the better one (ties: the network's) is the run's val_class_f1
        f1 = {s: final[f"val_class_f1_{s}"] for s in ("network", "shape")}
        assert f1[chosen] == max(f1.values()) == final["val_class_f1"]
    else:
        assert chosen == "shape" and "val_class_f1_network" not in final
    scores, picks = score_checkpoint(tmp_path, two_classes, "val", "cpu")  # the checkpoint detects as calibrated
    assert scores.class_f1_pooled == pytest.approx(final["val_class_f1"])
    if class_source == "shape":  # sasi predict: the same picks with the same classes
        from sasi.io import read_particles

        name = two_classes.names("val")[0]
        run = _cli("predict", str(tmp_path), str(two_classes.root / name / "tomogram.mrc"), "--out",
                   str(tmp_path / "p.parquet"), "--device", "cpu")
        assert run.returncode == 0, run.stderr
        predicted = read_particles(tmp_path / "p.parquet")
        assert predicted.column("label").to_pylist() == picks.column("label").to_pylist()
    _, saved, state = load_checkpoint(tmp_path)
    assert state["shape_classifier"] is not None
    as_network = replace(saved, detect=replace(saved.detect, class_source="network"))
    assert checkpoint_detection(as_network, state).shape is None
    state["shape_classifier"] = None
    as_shape = replace(saved, detect=replace(saved.detect, class_source="shape"))
    with pytest.raises(SasiError, match="no shape classifier"):
        checkpoint_detection(as_shape, state)


def test_a_batch_beyond_the_index_limit_is_a_clear_error():
    from dataclasses import replace

    from sasi.errors import SasiError
    from sasi.model import build_model
    from sasi.train.config import SasiConfig
    from sasi.train.loop import check_batch_size

    backbone, config = build_model("deepfinder", 4), SasiConfig()
    check_batch_size(backbone, config)  # the defaults are far below
    big = replace(config, train=replace(config.train, batch_size=128), data=replace(config.data, patch=64))
    with pytest.raises(SasiError, match=r"256 crops of 64³ voxels .* more than 2³¹"):
        check_batch_size(backbone, big)
