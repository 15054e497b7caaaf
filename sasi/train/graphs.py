"""CUDA graphs for the network passes of a training step (``train.cuda_graphs``).

A SaSi step launches hundreds of small kernels (a 24³-patch U-Net forward and backward); on a big GPU the
host cannot launch them as fast as the device runs them. :class:`GraphedNetwork` records each pass once per
input shape with :func:`torch.cuda.make_graphed_callables` (forward and backward as two graphs) and replays
it: the same kernels in the same order, so the maths is unchanged. Batch building, the loss and the (fused)
optimiser step stay eager. Needs autocast without its weight cache (``cache_enabled=False``); not used with
DDP or ``torch.compile``.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn


# The graphs' warm-up runs on a side stream; autograd then warns that gradient accumulation changed streams
# (harmless: the step waits for it).
warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")


class _Pass(nn.Module):
    """One way of calling the network (logits, logits and projection, or projection), as a module to graph."""

    def __init__(self, net: nn.Module, project: bool, segment: bool):
        super().__init__()
        self.net, self.project, self.segment = net, project, segment

    def forward(self, x: Tensor):
        return self.net(x, project=True, segment=self.segment) if self.project else self.net(x)


class GraphedNetwork:
    """Call like the network (``net(x)`` / ``net(x, project=True[, segment=False])``); each (shape, pass) is graphed
    on first use.

    A step with the consistency branch (2×batch crops) and one without, and the SSL step, each get their own
    graphs; every pass has its own memory pool.
    """

    def __init__(self, net: nn.Module):
        self.net = net
        self.passes: dict[tuple, nn.Module] = {}

    def __call__(self, x: Tensor, project: bool = False, segment: bool = True):
        key = (tuple(x.shape), x.dtype, project, segment)
        if key not in self.passes:
            self.passes[key] = torch.cuda.make_graphed_callables(
                _Pass(self.net, project, segment), (x.detach().clone(),), allow_unused_input=True)
        return self.passes[key](x)


def graphs_usable(requested: bool, device: torch.device, world_size: int, compiled: bool) -> bool:
    """Whether to graph: asked for, on CUDA, one process (no DDP hooks) and not compiled."""
    return requested and device.type == "cuda" and world_size == 1 and not compiled
