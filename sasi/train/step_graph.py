"""Whole training steps as CUDA graphs (``train.graph_step``): the supervised step and the SSL step.

With the network's passes graphed (:mod:`sasi.train.graphs`) a SaSi step still launches the batch building
(crops, infill, views, consistency transform), the loss and Adam eagerly, and the host sets the pace. Here the
host only draws the step's random parameters (:func:`sasi.train.supervised.draw_supervised`,
:meth:`sasi.train.ssl.SelfSupervision.draw_ssl`: the eager step's draws in its order, so the maths is unchanged),
copies them into fixed device buffers without a sync, and replays one graph of everything else: crops, infill,
labels or views, forward, loss, backward and the (capturable, fused) Adam step.

Each kind of step (with and without the consistency term) is run ``warmup`` times eagerly on a side stream
(cuDNN autotuning, optimiser state), then captured once and replayed. The optimiser's state tensors are baked
into the graphs: replacing them (the optimiser reset after ISS) calls :meth:`StepGraph.reset`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor

from sasi.transfer import to_device


def leaves(tree: Any) -> list[Tensor]:
    """The tensors of a tree of (named) tuples, tensors and ``None``, in order."""
    if isinstance(tree, Tensor):
        return [tree]
    return [] if tree is None else [t for branch in tree for t in leaves(branch)]


def map_tensors(fn: Callable[[Tensor], Tensor], tree: Any) -> Any:
    """``tree`` with ``fn`` applied to every tensor (same structure)."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if tree is None:
        return None
    branches = [map_tensors(fn, branch) for branch in tree]
    return type(tree)(*branches) if hasattr(tree, "_fields") else type(tree)(branches)


class StepGraph:
    """Call as ``step_graph(kind, draw)``: runs ``step(draw on the device)`` and returns its metrics.

    ``capture=False`` (CPU, tests) keeps everything but the graph: the fixed buffers are filled and ``step`` is
    re-run on them, so the buffer plumbing is the one a GPU replays. The returned metrics are the graph's output
    buffers: read them before the next call.
    """

    def __init__(self, step: Callable[[Any], dict[str, Tensor]], device: torch.device, warmup: int = 2,
                 capture: bool = True):
        self.step, self.device, self.warmup, self.capture = step, device, warmup, capture
        self.graphs: dict[Hashable, tuple[Callable[[], None], Any, dict[str, Tensor]]] = {}
        self.eager_runs: Counter[Hashable] = Counter()

    def reset(self) -> None:
        """Forget every graph (e.g. after the optimiser's state was replaced: its tensors are baked into them)."""
        self.graphs.clear()
        self.eager_runs.clear()

    def __call__(self, kind: Hashable, draw: Any) -> dict[str, Tensor]:
        if kind in self.graphs:
            replay, buffers, outputs = self.graphs[kind]
            for buffer, value in zip(leaves(buffers), leaves(draw), strict=True):
                buffer.copy_(value.pin_memory() if self.capture else value, non_blocking=True)
            replay()
            return outputs
        on_device = map_tensors(lambda t: to_device(t, self.device), draw)
        if self.eager_runs[kind] < self.warmup:
            self.eager_runs[kind] += 1
            return self._eager(on_device)
        buffers = map_tensors(torch.clone, on_device)
        replay, outputs = self._record(buffers)
        self.graphs[kind] = (replay, buffers, outputs)
        replay()  # recording ran nothing: this is the step itself
        return outputs

    def _eager(self, draw: Any) -> dict[str, Tensor]:
        if not self.capture:
            return self.step(draw)
        side = torch.cuda.Stream(self.device)  # warm-up off the default stream, as graph capture asks
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            out = self.step(draw)
        torch.cuda.current_stream(self.device).wait_stream(side)
        return out

    def _record(self, buffers: Any) -> tuple[Callable[[], None], dict[str, Tensor]]:
        if not self.capture:
            outputs: dict[str, Tensor] = {}
            return (lambda: outputs.update(self.step(buffers))), outputs
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # other threads (Ray, MLflow) may use CUDA
            outputs = self.step(buffers)
        return graph.replay, outputs
