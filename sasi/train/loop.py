"""The SaSi training loop (pure PyTorch). Ray Train calls the same :func:`fit` on every worker."""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sasi.config import to_dict
from sasi.dataset import load_dataset
from sasi.detect import normalise_on, reclassify
from sasi.errors import SasiError
from sasi.method.consistency import consistency_target
from sasi.method.losses import SegmentationLoss
from sasi.metrics import VALIDATION_METRICS
from sasi.model.limits import INDEX_LIMIT, widest_activation
from sasi.scoring import choose_min_score, detect_tomograms, geometry_of, score_picks
from sasi.train.checkpoint import CHECKPOINT, resolve_device
from sasi.train.config import SasiConfig, ScheduleConfig
from sasi.train.data import TrainingData
from sasi.train.graphs import GraphedNetwork, graphs_usable
from sasi.train.network import SasiNet
from sasi.train.ssl import SelfSupervision
from sasi.train.step_graph import StepGraph
from sasi.train.supervised import SupervisedDraw, build_supervised, draw_supervised


@dataclass
class Hooks:
    """How a launcher plugs into :func:`fit` (defaults: single process, no reporting)."""

    rank: int = 0
    world_size: int = 1
    prepare_model: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m
    report: Callable[[dict[str, float], Path | None], None] = lambda metrics, checkpoint_dir: None
    resume_from: Path | None = None  # a checkpoint directory to continue from
    device: torch.device | None = None


@dataclass
class FitResult:
    model: SasiNet
    history: list[dict[str, float]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def _foreground_shares(logits: Tensor, target: Tensor) -> dict[str, Tensor]:
    """Share of voxels predicted non-background and labelled foreground (hard or soft targets): a
    collapse to one class shows as ``pred_foreground`` → 0 (or → 1) while ``label_foreground`` stays."""
    with torch.no_grad():
        label = target[:, 1:].sum(1) if target.is_floating_point() else (target > 0).float()
        return {"pred_foreground": (logits.argmax(1) != 0).float().mean(), "label_foreground": label.mean()}


def use_fast_layout(net: torch.nn.Module, train: ScheduleConfig, device: torch.device) -> None:
    """On CUDA: channels_last_3d weights and cuDNN autotuning, as ``train`` asks (measured: benchmarks/train_step.py)."""
    if device.type != "cuda":
        return
    if train.channels_last:
        net.to(memory_format=torch.channels_last_3d)
    torch.backends.cudnn.benchmark = train.cudnn_benchmark


SHAPE_PICKS_PER_PARTICLE = 20  # auto: above this many picks per true particle, validation skips shape classes


def check_batch_size(backbone: torch.nn.Module, config: SasiConfig) -> None:
    """A clear error where the largest batch the loop forwards (crops and their transformed copies, or three SSL
    views) would put more than :data:`INDEX_LIMIT` elements into one of the network's tensors."""
    crops = max(2 * config.train.batch_size, 3 * config.pretrain.batch_size)
    elements = crops * config.data.patch**3 * widest_activation(backbone)
    if elements > INDEX_LIMIT:
        raise SasiError(f"{crops} crops of {config.data.patch}³ voxels (train.batch_size, pretrain.batch_size, "
                        f"data.patch) put {elements:.3g} elements into one tensor, more than 2³¹: cuDNN's 3D "
                        f"convolutions return zeros there; lower the batch size or the patch")


class Trainer(SelfSupervision):
    """One SaSi run: builds everything from the config, then :meth:`run` trains it."""

    def __init__(self, config: SasiConfig, hooks: Hooks | None = None, progress: bool = True):
        self.config = config
        self.hooks = hooks or Hooks()
        self.progress = progress and self.hooks.rank == 0
        self.device = self.hooks.device or resolve_device(config.train.device)
        seed = config.train.seed
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        self.generator = torch.Generator().manual_seed(seed * 1000 + self.hooks.rank)
        if config.data.patch % 4:
            raise SasiError(f"data.patch must be a multiple of 4, got {config.data.patch}")
        if config.train.log_every < 1:
            raise SasiError(f"train.log_every must be >= 1, got {config.train.log_every}")
        self.dataset = load_dataset(config.data.dataset)
        self.data = TrainingData(config, self.dataset, self.device)
        self.n_classes = len(self.data.classes) + 1
        net = SasiNet.build(config.model.name, self.n_classes, config.data.patch,
                            config.pretrain.contrastive.projection_dim, config.model.channels).to(self.device)
        self.net = net
        check_batch_size(net.backbone, config)
        cuda = self.device.type == "cuda"
        use_fast_layout(net, config.train, self.device)
        self.model = self.hooks.prepare_model(net)
        if config.train.compile and cuda:
            self.model = torch.compile(self.model, dynamic=False)
        self.graphed = (GraphedNetwork(self.model) if graphs_usable(config.train.cuda_graphs, self.device,
                                                                    self.hooks.world_size, config.train.compile)
                        else None)
        whole_step = graphs_usable(config.train.graph_step, self.device, self.hooks.world_size, config.train.compile)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=config.train.lr, fused=cuda,  # one kernel
                                          capturable=whole_step)
        self.step_graph = self.ssl_graph = None
        if whole_step:
            self.step_graph = StepGraph(lambda draw: self.supervised_update(draw, self.model), self.device)
            self.ssl_graph = StepGraph(lambda draw: self.ssl_update(draw, partial(self.model, project=True)),
                                       self.device)
        self.loss = SegmentationLoss.from_config(config.loss)
        self.step = 0
        self.ssl_steps = 0
        self.history: list[dict[str, float]] = []
        self.ssl_running: dict[str, Tensor] = {}  # SSL running means (see sasi.train.ssl)
        self.iss_diagnostics: dict[str, float] = {}
        self.calibration: dict[str, Any] = {}  # detection settings chosen on the validation tomogram
        if self.hooks.resume_from is not None:
            self._load(self.hooks.resume_from)

    # ---- batches -------------------------------------------------------------------------
    def _amp(self):
        graphs = self.graphed is not None or self.step_graph is not None  # graphs need autocast without its cache
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not graphs,
                              enabled=self.config.train.amp and self.device.type == "cuda")

    def forward(self, x: Tensor, project: bool = False, segment: bool = True):
        """The training pass of the network (graphed when ``train.cuda_graphs`` applies); see :class:`SasiNet`."""
        if self.graphed is not None:
            return self.graphed(x, project, segment)
        return self.model(x, project=True, segment=segment) if project else self.model(x)

    def supervised_batch(self) -> tuple[Tensor, Tensor]:
        """One supervised batch (crops and labels, infill applied; no consistency term)."""
        draw = draw_supervised(self.data, self.config, self.generator, consistency=False)
        return build_supervised(self.data, draw.to(self.device), self.config, self.n_classes)[:2]

    # ---- steps ---------------------------------------------------------------------------
    def _consistency_loss(self, logits: Tensor, transformed: Tensor, t) -> Tensor:
        cfg = self.config.consistency
        target, weight = consistency_target(logits.detach(), t, cfg.target, cfg.confidence)
        return self.loss(transformed, target, weight).total

    def supervised_step(self) -> dict[str, Tensor]:
        """Draw the step's random parameters on the host, then build, forward, backward and step on the device
        (as one CUDA graph with ``train.graph_step``)."""
        consistency = self.config.consistency.active(self.step, self.config.train.iterations)
        draw = draw_supervised(self.data, self.config, self.generator, consistency)
        if self.step_graph is not None:
            return self.step_graph(consistency, draw)
        return self.supervised_update(draw.to(self.device), self.forward)

    def supervised_update(self, draw: SupervisedDraw, forward: Callable[[Tensor], Tensor]) -> dict[str, Tensor]:
        """The device half of a supervised step: ``draw`` (on the device) → batch → loss → Adam step."""
        x, mask, t = build_supervised(self.data, draw, self.config, self.n_classes)
        with self._amp():
            logits = forward(x).float()
        b = mask.shape[0]
        parts = self.loss(logits[:b], mask)
        total = parts.total
        metrics = {"loss": total, "dice": parts.dice, "focal": parts.focal, **_foreground_shares(logits[:b], mask)}
        if t is not None:
            cons = self._consistency_loss(logits[:b], logits[b:], t)
            total = total + self.config.consistency.weight * cons
            metrics.update(loss=total, consistency=cons)
        self._backward(total)
        return {k: v.detach() for k, v in metrics.items()}

    def _backward(self, loss: Tensor) -> None:
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()

    # ---- schedule ------------------------------------------------------------------------
    def validate(self) -> dict[str, float]:
        """Detect on the validation tomogram, choose the score cut-off there, report ``val_*`` at that cut-off."""
        names = self.dataset.splits.get("val", [])
        name = self.config.data.val_tomogram or (names[0] if names else "")
        if not name or self.hooks.rank != 0:
            return {}
        geometry = geometry_of(self.dataset, self.config.data.label_radius_scale)
        picks = detect_tomograms(self.net.backbone, self.dataset, [name], geometry, self.config.detect,
                                 device=self.device, amp=self.config.train.amp)
        sources = {"network": picks}
        # shape descriptors cost ~1 ms per pick: an early network's flood of picks keeps its own classes under auto
        flood = self.config.detect.class_source == "auto" and picks.num_rows > SHAPE_PICKS_PER_PARTICLE * max(
            1, self.dataset.particles(name).num_rows)
        if self.data.classifier is not None and not flood:
            volume = normalise_on(self.dataset.tomogram(name).data, self.device)
            sources["shape"] = reclassify(picks, volume, self.data.classifier, geometry.classes, geometry.voxel_size)
            if self.config.detect.class_source == "shape":
                del sources["network"]
        calibrated = {}
        for source, found in sources.items():  # each class source at its own best cut-off
            min_score = self.config.detect.min_score
            if min_score is None:
                min_score = choose_min_score(self.dataset, found, [name])
            calibrated[source] = (min_score, score_picks(self.dataset, found, [name], "val", min_score))
        source = max(calibrated, key=lambda s: calibrated[s][1].class_f1_pooled)  # ties: the network's
        min_score, scores = calibrated[source]
        self.calibration = {"min_score": min_score, "class_source": source, "tomogram": name}
        out = {k: v for k, v in scores.metrics().items() if k.removeprefix("val_") in VALIDATION_METRICS}
        if len(calibrated) > 1:
            out |= {f"val_class_f1_{s}": calibrated[s][1].class_f1_pooled for s in calibrated}
        return out

    def run(self) -> FitResult:
        from tqdm import tqdm

        cfg = self.config.train
        iss = self.iss_steps()
        bar = tqdm(total=iss + cfg.iterations, initial=min(self.ssl_steps, iss) + self.step,
                   disable=not self.progress, desc=self.config.name, dynamic_ncols=True)
        started = time.perf_counter()
        self.initial_self_supervision(bar)
        running: dict[str, Tensor] = {}
        while self.step < cfg.iterations:
            if self.pss_due():
                for _ in range(self.config.pretrain.phase_steps):
                    self.ssl_step()
            metrics = self.supervised_step()
            self.step += 1
            running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in metrics.items()}
            last = self.step == cfg.iterations
            report = (cfg.eval_every and self.step % cfg.eval_every == 0) or last
            if report or self._checkpoint_due() or self.step % cfg.log_every == 0:
                host = self._host(running, "training")
                bar.set_postfix({k: f"{v:.3g}" for k, v in host.items()}, refresh=False)
            bar.update()
            if report:
                self._report({**host, **self.ssl_metrics()}, started, checkpoint=last or self._checkpoint_due())
            elif self._checkpoint_due():
                self._report({**host, **self.ssl_metrics()}, started, checkpoint=True, evaluate=False)
        bar.close()
        return FitResult(self.net, self.history, self.data.classes)

    def _host(self, metrics: dict[str, Tensor], phase: str) -> dict[str, float]:
        """Device metrics → floats (one sync); a non-finite loss stops training with a clear error."""
        host = {k: float(v) for k, v in zip(metrics, torch.stack(list(metrics.values())).tolist())}
        bad = {k: v for k, v in host.items() if not math.isfinite(v)}
        if bad:
            raise SasiError(f"{phase}: loss became {bad} by iteration {self.step}; lower train.lr")
        return host

    def _checkpoint_due(self) -> bool:
        every = self.config.train.checkpoint_every
        return bool(every) and self.step % every == 0

    def _report(self, running: dict[str, float], started: float, checkpoint: bool, evaluate: bool = True) -> None:
        metrics = {"iteration": float(self.step), **{f"train_{k}": v for k, v in running.items()},
                   "elapsed_s": time.perf_counter() - started}
        if evaluate:
            t0 = time.perf_counter()
            metrics.update(self.validate())
            metrics["validate_s"] = time.perf_counter() - t0  # detection + scoring: slow detection settings show here
            self.history.append(metrics)
        if checkpoint and self.hooks.rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                self.save(Path(tmp))
                self.hooks.report(metrics, Path(tmp))
        else:
            self.hooks.report(metrics, None)

    # ---- checkpoints ---------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        state = {"model": self.net.state_dict(), "optimiser": self.optimiser.state_dict(), "step": self.step,
                 "ssl_steps": self.ssl_steps, "generator": self.generator.get_state(),
                 "torch_rng": torch.get_rng_state(), "history": self.history,
                 "config": to_dict(self.config), "classes": self.data.classes,
                 "voxel_size": self.dataset.voxel_size, "radii": dict(self.dataset.radii),
                 "calibration": self.calibration,
                 "shape_classifier": self.data.classifier.state() if self.data.classifier is not None else None}
        torch.save(state, folder / CHECKPOINT)
        return folder / CHECKPOINT

    def _load(self, folder: Path) -> None:
        state = torch.load(Path(folder) / CHECKPOINT, map_location=self.device, weights_only=False)
        self.net.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.step, self.ssl_steps = state["step"], state["ssl_steps"]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.history = state["history"]
        self.calibration = state.get("calibration", {})


def fit(config: SasiConfig, hooks: Hooks | None = None, progress: bool = True) -> FitResult:
    """Train SaSi as configured; returns the model and the validation history."""
    return Trainer(config, hooks, progress).run()
