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
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from sasi.method.consistency import GridTransform, sample_transform
from sasi.method.contrastive import nt_xent, retrieval_accuracy
from sasi.method.infill import InfillDraw, apply_infill, draw_infill, infill_active
from sasi.train.crops import crop, random_rotations
from sasi.train.step_graph import map_tensors
from sasi.transfer import to_device

if TYPE_CHECKING:
    from tqdm import tqdm

SSL_KEYS = ("ssl_", "iss_")
CPU = torch.device("cpu")


class SSLDraw(NamedTuple):
    """The random parameters of one SSL step (host tensors until moved), see :meth:`SelfSupervision.draw_ssl`."""

    centres: Tensor  # (2, B, 3) window centres of view 1 and view 2 (view shifts included)
    rotations: Tensor | None  # (2, B, 3, 3) view rotations, or None
    infill: tuple[InfillDraw, InfillDraw] | None  # one infill per view, or None
    noise: Tensor | None  # (2, B, 1, W, W, W) standard normal noise per view, or None
    transform: tuple[Tensor, Tensor] | None  # consistency T of view 1, or None

    def to(self, device: torch.device | str | None) -> SSLDraw:
        return map_tensors(lambda t: to_device(t, device), self)


class SelfSupervision:
    """Mixin of ``Trainer``: uses its ``config``, ``data``, ``net``, ``forward``, ``generator``, ``device``,
    ``n_classes``, ``optimiser``, ``step``, ``ssl_steps``, ``history``, ``_amp``, ``_backward``, ``ssl_graph``,
    ``step_graph`` and ``_consistency_loss``."""

    ssl_running: dict[str, Tensor]
    iss_diagnostics: dict[str, float]

    # ---- views ---------------------------------------------------------------------------
    def window_batch(self) -> Tensor:
        """A batch of unlabelled sliding windows (random, with replacement)."""
        return crop(self.data.volume, to_device(self._window_centres(), self.device), self.config.data.patch)[0]

    def _window_centres(self) -> Tensor:
        idx = torch.randint(len(self.data.windows), (self.config.pretrain.batch_size,), generator=self.generator)
        return self.data.windows[idx]

    def draw_ssl(self, consistency: bool) -> SSLDraw:
        """Draw one SSL step's parameters on the host, in the generator order of the eager step."""
        p, size, g = self.config.pretrain, self.config.data.patch, self.generator
        centres = self._window_centres()
        if p.view_shift or p.view_rotate:  # each view its own shift and rotation of the same windows
            views = []
            for _ in range(2):
                shift = (torch.rand(centres.shape[0], 3, generator=g) * 2 - 1) * p.view_shift * size
                views.append((centres + shift, random_rotations(centres.shape[0], g, CPU) if p.view_rotate else None))
            shifted, rotations = torch.stack([v[0] for v in views]), [v[1] for v in views]
            rotations = None if rotations[0] is None else torch.stack(rotations)
        else:  # the paper: one window, both views mix it
            shifted, rotations = torch.stack([centres, centres]), None
        b, infill = centres.shape[0], replace(self.config.infill, enabled=True)
        infills = (tuple(draw_infill(b, (size,) * 3, infill, g) for _ in range(2)) if infill_active(infill) else None)
        noise = (torch.stack([torch.randn(b, 1, size, size, size, generator=g) for _ in range(2)])
                 if p.view_noise else None)
        transform = None
        if consistency:
            c = self.config.consistency
            t = sample_transform(g, (size,) * 3, c.max_shift, c.flips, c.rotations)
            transform = (t.matrix, t.offset)
        return SSLDraw(shifted, rotations, infills, noise, transform)

    def ssl_views(self) -> tuple[Tensor, Tensor]:
        """Two infill views of the same windows (``PretrainConfig`` view options; all off: the paper)."""
        views, _ = self._build_ssl(self.draw_ssl(consistency=False).to(self.device))
        return views[0], views[1]

    def _build_ssl(self, draw: SSLDraw) -> tuple[list[Tensor], GridTransform | None]:
        """The two views of ``draw`` (on the device) and the consistency ``T``."""
        size, infill = self.config.data.patch, replace(self.config.infill, enabled=True)
        views = []
        for v in range(2):
            rotations = None if draw.rotations is None else draw.rotations[v]
            view = crop(self.data.volume, draw.centres[v], size, rotations)[0]
            if draw.infill is not None:
                view = apply_infill(view, None, self.n_classes, infill, draw.infill[v])[0]
            if draw.noise is not None:
                view = view + self.config.pretrain.view_noise * draw.noise[v].to(view.dtype)
            views.append(view)
        t = None if draw.transform is None else GridTransform(*draw.transform, (size,) * 3)
        return views, t

    # ---- step ----------------------------------------------------------------------------
    def ssl_step(self) -> dict[str, Tensor]:
        """NT-Xent on two views of unlabelled windows (+ consistency on the first view, if active); one CUDA graph
        with ``train.graph_step``."""
        consistency = self.config.consistency.active_in_ssl(self.step, self.config.train.iterations)
        draw = self.draw_ssl(consistency)
        if self.ssl_graph is not None:
            metrics = self.ssl_graph(consistency, draw)
        else:
            metrics = self.ssl_update(draw.to(self.device), partial(self.forward, project=True))
        self.ssl_steps += 1
        self.ssl_running = {k: 0.9 * self.ssl_running.get(k, v) + 0.1 * v for k, v in metrics.items()}
        return metrics

    def ssl_update(self, draw: SSLDraw, forward: Callable[..., Tensor | tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        """The device half of an SSL step: ``draw`` (on the device) → views → NT-Xent (+ consistency) → Adam step.
        ``forward(x, segment=...)``: the network's projection pass; the decoder runs only for the consistency term."""
        (v1, v2), t = self._build_ssl(draw)
        b = v1.shape[0]
        x = torch.cat([v1, v2] + ([t.apply(v1)] if t is not None else []))
        with self._amp():
            logits, z = forward(x, segment=True) if t is not None else (None, forward(x, segment=False))
        z1, z2 = z[:b].float(), z[b:2 * b].float()
        loss = nt_xent(z1, z2, self.config.pretrain.contrastive.temperature)
        metrics = {"ssl_contrastive": loss, "ssl_top1": retrieval_accuracy(z1, z2)}
        if t is not None:
            cons = self._consistency_loss(logits[:b].float(), logits[2 * b:].float(), t)
            loss = loss + self.config.consistency.weight * cons
            metrics["ssl_consistency"] = cons
        self._backward(loss)
        return {k: v.detach() for k, v in metrics.items()}

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
            for graph in (self.ssl_graph, self.step_graph):
                if graph is not None:
                    graph.reset()  # their Adam state tensors are gone

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
