"""Saved runs: where a checkpoint lives, how to load it, and which device to run on."""

from __future__ import annotations

from pathlib import Path

import torch

from sasi.config import from_dict
from sasi.errors import SasiError
from sasi.train.config import SasiConfig
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
