"""The training configuration: typed dataclasses that round-trip to YAML (see :mod:`sasi.config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sasi.detect.config import DetectConfig
from sasi.errors import SasiError
from sasi.method.consistency import ConsistencyConfig
from sasi.method.contrastive import ContrastiveConfig
from sasi.method.infill import InfillConfig
from sasi.method.losses import LossConfig
from sasi.model import ModelConfig


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """Which tomogram to learn from and how labelled points become targets."""

    dataset: str = "runs/demo-data"  # dataset folder (``sasi simulate`` layout)
    train_tomogram: str = ""  # default: the first tomogram of the "train" split
    val_tomogram: str = ""  # default: the first of "val" ("" and no val split: no validation)
    shots: int = 5  # labelled particles per class (N)
    fewshot_seed: int = 0  # which particles are labelled
    label_radius_scale: float = 0.5  # sphere radius = scale × class equivalent radius
    background: Literal["rest", "certain"] = "rest"  # see sasi.fewshot
    patch: int = 24  # W, divisible by 4
    shift_fraction: float = 0.5  # supervised crops: centre shift ±fraction·W
    rotate: bool = True  # supervised crops: uniformly random rotation (else flips only)


@dataclass(frozen=True, kw_only=True)
class PretrainConfig:
    """Contrastive self-supervision on unlabelled sliding windows (``none``, ISS or PSS)."""

    schedule: Literal["none", "initial", "periodic"] = "none"
    epochs: int = 10  # ISS: passes over all windows (stride W/2) before supervised training
    period: int = 400  # PSS: an SSL phase every ``period`` supervised iterations ...
    until: float = 0.5  # ... during the first ``until`` fraction of training
    phase_steps: int = 1  # PSS: SSL steps per phase
    batch_size: int = 16
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    # Views. Paper: two infill mixes of the same window, which share its noise voxel for voxel, so
    # NT-Xent can match them by that fingerprint. One tomogram has no independent noise (no odd/even
    # half-sets); what we can do is crop each view separately from the tomogram (own centre shift,
    # own rotation: trilinear resampling at different sub-voxel positions, no voxel-aligned noise) and
    # mask what stays shared with independent Gaussian noise. All off = the paper.
    view_shift: float = 0.0  # each view's centre moves by up to ±view_shift·W per axis, independently
    view_rotate: bool = False  # each view is uniformly randomly rotated, independently
    view_noise: float = 0.0  # std of independent Gaussian noise added to each view (tomogram std = 1)
    reset_optimiser: bool = False  # fresh Adam state after ISS (paper: not stated; the state carries over)

    def __post_init__(self) -> None:
        if self.view_shift < 0 or self.view_noise < 0:
            raise SasiError(f"pretrain: view_shift and view_noise must be >= 0, got {self.view_shift}, {self.view_noise}")


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    iterations: int = 2000  # supervised iterations (the budget)
    batch_size: int = 16
    lr: float = 1e-4
    eval_every: int = 500  # validation F1 every N iterations (0: only at the end)
    checkpoint_every: int = 0  # save a checkpoint every N iterations (0: only at the end)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on GPU
    cuda_graphs: bool = True  # replay the network's passes as CUDA graphs (GPU, one process; sasi.train.graphs)
    graph_step: bool = True  # whole SSL/supervised steps, crops to Adam, as CUDA graphs (train.step_graph; +48 % it/s)
    compile: bool = False  # torch.compile the network (GPU only; slower on H100 here: benchmarks/train_step.py)
    channels_last: bool = True  # channels_last_3d memory format (GPU only; +21 % it/s on H100)
    cudnn_benchmark: bool = True  # let cuDNN time its conv algorithms once per shape (GPU only)
    log_every: int = 50  # copy running losses to the host (progress bar, NaN check) every N steps


@dataclass(frozen=True, kw_only=True)
class SasiConfig:
    """Everything one SaSi training run needs; ``sasi train CONFIG.yaml`` reads this."""

    name: str = "sasi"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    infill: InfillConfig = field(default_factory=lambda: InfillConfig(enabled=False))
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: ScheduleConfig = field(default_factory=ScheduleConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
