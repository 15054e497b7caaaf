"""Saved runs: where a checkpoint lives, how to load it, which device to run on, and how it detects and scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch

from sasi.config import from_dict
from sasi.dataset import Dataset, load_dataset
from sasi.detect import ParticleGeometry, ShapeClassifier
from sasi.errors import SasiError
from sasi.train.config import SasiConfig
from sasi.scoring import SplitScores, detect_tomograms, score_picks
from sasi.train.network import SasiNet

CHECKPOINT = "checkpoint.pt"


def resolve_device(name: str) -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu`` or ``cuda[:N]``; a GPU that is not there is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SasiError(f"unknown device {name!r}; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SasiError(f"device {name!r} asked for, but this machine has no CUDA GPU; use --device cpu or auto")
    return device


def load_checkpoint(folder: str | Path) -> tuple[SasiNet, SasiConfig, dict]:
    """A checkpoint folder or ``checkpoint.pt`` → the network (on CPU, eval mode), its config and the raw checkpoint state."""
    path = Path(folder)
    path = path / CHECKPOINT if path.is_dir() else path
    if not path.is_file():
        raise SasiError("checkpoint not found", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise SasiError(f"not a sasi checkpoint ({str(exc).splitlines()[0]})", path) from None
    config = from_dict(SasiConfig, state["config"], path)
    net = SasiNet.build(config.model.name, len(state["classes"]) + 1, config.data.patch,
                        config.pretrain.contrastive.projection_dim, config.model.channels)
    net.load_state_dict(state["model"])
    return net.eval(), config, state


@dataclass(frozen=True)
class CheckpointDetection:
    """How a checkpoint detects: its particle geometry, score cut-off and (when picks take their class from their
    shape) the shape classifier."""

    geometry: ParticleGeometry
    min_score: float
    shape: ShapeClassifier | None


def checkpoint_detection(config: SasiConfig, state: dict) -> CheckpointDetection:
    """The detection a checkpoint was calibrated for: ``detect.min_score``, else the cut-off chosen on the validation
    tomogram in training, else 0; classes from shape when ``detect.class_source`` is ``shape``, or ``auto`` and shape
    won on the validation tomogram (checkpoints without a classifier use the network's classes)."""
    radii = state.get("radii")
    if radii is None:  # checkpoints written before radii were saved: the training dataset's manifest
        radii = load_dataset(config.data.dataset).radii
    geometry = ParticleGeometry(list(state["classes"]), float(state["voxel_size"]), dict(radii),
                                config.data.label_radius_scale)
    calibration = state.get("calibration", {})
    min_score = config.detect.min_score
    if min_score is None:
        min_score = float(calibration.get("min_score", 0.0))
    source = config.detect.class_source
    if source == "auto":
        source = calibration.get("class_source", "network")
    saved = state.get("shape_classifier")
    if source == "shape" and saved is None:
        raise SasiError("detect.class_source is shape but this checkpoint has no shape classifier (trained with "
                        "class_source network or before classifiers were saved); use --set detect.class_source=network")
    shape = ShapeClassifier.from_state(saved) if source == "shape" else None
    return CheckpointDetection(geometry, min_score, shape)


def score_checkpoint(checkpoint: str | Path, dataset: str | Path | Dataset | None = None, split: str = "test",
                     device: torch.device | str = "auto") -> tuple[SplitScores, pa.Table]:
    """Detect on every tomogram of ``split`` with a saved model (on the GPU when there is one) and score it.

    The score cut-off is that of :func:`checkpoint_detection`.
    """
    net, config, state = load_checkpoint(checkpoint)
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset or config.data.dataset)
    dev = resolve_device(device)
    names = ds.names(split)
    how = checkpoint_detection(config, state)
    picks = detect_tomograms(net.backbone.to(dev), ds, names, how.geometry, config.detect, device=dev,
                             amp=config.train.amp, min_score=how.min_score, shape=how.shape)
    return score_picks(ds, picks, names, split, how.min_score), picks
