"""End-to-end: the pure-PyTorch loop learns to find large particles on CPU; predict/CLI errors."""

import subprocess
import sys

import numpy as np
import pytest

from sasi.config import from_dict
from sasi.scoring import score_checkpoint
from sasi.simulate import SimulationConfig, simulate_dataset
from sasi.train.config import SasiConfig
from sasi.train.loop import Trainer, load_checkpoint


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
