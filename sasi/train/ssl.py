"""Self-supervision of :class:`~sasi.train.loop.Trainer`: contrastive views of unlabelled windows, the SSL
step, the ISS/PSS schedule, and the SSL diagnostics that go into the training history.

Diagnostics (reported with every training report, so they reach MLflow as ``train_*``):

- ``ssl_contrastive``, ``ssl_top1``, ``ssl_consistency``: running means (EMA) of the NT-Xent loss, of
  positive-pair top-1 retrieval (is each view's nearest neighbour its partner; chance ``1/(2B − 1)``) and
  of the consistency term of the SSL steps, at the end of ISS / the last PSS phase;
- ``iss_bottleneck_std_{before,after}``, ``iss_bottleneck_spread_{before,after}``: on a fixed probe batch
  of windows, the std of all bottleneck activations and the mean over features of their std across
  windows (0: every window gets the same embedding, a collapse).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sasi.method.contrastive import nt_xent, retrieval_accuracy
from sasi.method.infill import volume_infill
from sasi.train.crops import crop, random_rotations
from sasi.transfer import to_device

if TYPE_CHECKING:
    from tqdm import tqdm

SSL_KEYS = ("ssl_", "iss_")


class SelfSupervision:
    """Mixin of ``Trainer``: uses its ``config``, ``data``, ``net``, ``forward``, ``generator``, ``device``,
    ``n_classes``, ``optimiser``, ``step``, ``ssl_steps``, ``history``, ``_amp``, ``_backward`` and consistency helpers."""

    ssl_running: dict[str, Tensor]
    iss_diagnostics: dict[str, float]

    # ---- views ---------------------------------------------------------------------------
    def window_batch(self) -> Tensor:
        """A batch of unlabelled sliding windows (random, with replacement)."""
        return crop(self.data.volume, to_device(self._window_centres(), self.device), self.config.data.patch)[0]

    def _window_centres(self) -> Tensor:
        idx = torch.randint(len(self.data.windows), (self.config.pretrain.batch_size,), generator=self.generator)
        return self.data.windows[idx]

    def _view_crop(self, centres: Tensor) -> Tensor:
        """One view's own crop: its centre shifted by up to ±view_shift·W, optionally rotated."""
        p, size = self.config.pretrain, self.config.data.patch
        shift = (torch.rand(centres.shape[0], 3, generator=self.generator) * 2 - 1) * p.view_shift * size
        rot = random_rotations(centres.shape[0], self.generator, self.device) if p.view_rotate else None
        return crop(self.data.volume, to_device(centres + shift, self.device), size, rot)[0]

    def ssl_views(self) -> tuple[Tensor, Tensor]:
        """Two infill views of the same windows (``PretrainConfig`` view options; all off: the paper)."""
        p = self.config.pretrain
        if p.view_shift or p.view_rotate:
            centres = self._window_centres()
            windows = [self._view_crop(centres) for _ in range(2)]
        else:
            windows = [self.window_batch()] * 2
        infill = replace(self.config.infill, enabled=True)
        views = [volume_infill(w, None, self.n_classes, infill, self.generator)[0] for w in windows]
        if p.view_noise:
            views = [v + p.view_noise * to_device(torch.randn(v.shape, generator=self.generator), v.device, v.dtype)
                     for v in views]
        return views[0], views[1]

    # ---- step ----------------------------------------------------------------------------
    def ssl_step(self) -> dict[str, Tensor]:
        """NT-Xent on two views of unlabelled windows (+ consistency on the first view, if active)."""
        v1, v2 = self.ssl_views()
        b = v1.shape[0]
        x = torch.cat([v1, v2])
        consistency = self.config.consistency.active_in_ssl(self.step, self.config.train.iterations)
        if consistency:
            x_t, t = self._consistency_terms(v1)
            x = torch.cat([x, x_t[b:]])
        with self._amp():
            logits, z = self.forward(x, project=True)
        z1, z2 = z[:b].float(), z[b:2 * b].float()
        loss = nt_xent(z1, z2, self.config.pretrain.contrastive.temperature)
        metrics = {"ssl_contrastive": loss, "ssl_top1": retrieval_accuracy(z1, z2)}
        if consistency:
            cons = self._consistency_loss(logits[:b].float(), logits[2 * b:].float(), t)
            loss = loss + self.config.consistency.weight * cons
            metrics["ssl_consistency"] = cons
        self._backward(loss)
        self.ssl_steps += 1
        metrics = {k: v.detach() for k, v in metrics.items()}
        self.ssl_running = {k: 0.9 * self.ssl_running.get(k, v) + 0.1 * v for k, v in metrics.items()}
        return metrics

    # ---- schedule ------------------------------------------------------------------------
    def iss_steps(self) -> int:
        p = self.config.pretrain
        if p.schedule != "initial":
            return 0
        return p.epochs * math.ceil(len(self.data.windows) / (p.batch_size * self.hooks.world_size))

    def pss_due(self) -> bool:
        p = self.config.pretrain
        return (p.schedule == "periodic" and self.step > 0 and self.step % p.period == 0
                and self.step < p.until * self.config.train.iterations)

    def initial_self_supervision(self, bar: tqdm) -> None:
        """ISS: SSL steps until ``iss_steps()``; probes the bottleneck before and after, then (optionally)
        resets the optimiser so Adam's SSL moments do not carry into supervised training."""
        iss, log_every = self.iss_steps(), self.config.train.log_every
        if self.ssl_steps >= iss:
            return
        self.iss_diagnostics.update(self.bottleneck_stats("before"))
        while self.ssl_steps < iss:
            metrics = self.ssl_step()
            if self.ssl_steps % log_every == 0 or self.ssl_steps == iss:
                bar.set_postfix(self._host(metrics, "contrastive pre-training"), refresh=False)
            bar.update()
        self.iss_diagnostics.update(self.bottleneck_stats("after"))
        if self.config.pretrain.reset_optimiser:
            self.optimiser.state.clear()  # Adam re-initialises its moments and step count lazily

    # ---- diagnostics ---------------------------------------------------------------------
    def bottleneck_stats(self, when: str) -> dict[str, float]:
        """Bottleneck std and spread (see the module docstring) on a fixed, evenly spaced probe batch."""
        windows = self.data.windows
        n = max(2, min(len(windows), self.config.pretrain.batch_size))
        idx = torch.linspace(0, len(windows) - 1, n).round().long()
        x, _ = crop(self.data.volume, to_device(windows[idx], self.device), self.config.data.patch)
        with torch.no_grad(), self._amp():
            features = self.net.backbone.encode(x).flatten(1).float()
        return {f"iss_bottleneck_std_{when}": float(features.std()),
                f"iss_bottleneck_spread_{when}": float(features.std(0).mean())}

    def ssl_metrics(self) -> dict[str, float]:
        """SSL running means and ISS probes for a report; after a resume, the last reported values."""
        running = self._host(self.ssl_running, "contrastive pre-training") if self.ssl_running else {}
        current = {**running, **self.iss_diagnostics}
        last = self.history[-1] if self.history else {}
        carried = {k.removeprefix("train_"): v for k, v in last.items() if k.removeprefix("train_").startswith(SSL_KEYS)}
        return {**carried, **current}
