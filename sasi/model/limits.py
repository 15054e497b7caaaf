"""How large a tensor the network may make: cuDNN's 3D convolutions silently return zeros above 2³¹ elements."""

from __future__ import annotations

import torch

INDEX_LIMIT = 2**31 - 1  # elements of one tensor: cuDNN's 3D convs return zeros above it (PyTorch issue 87354)


def widest_activation(model: torch.nn.Module) -> float:
    """Elements per input voxel of the largest tensor that a layer of ``model`` takes or makes (one 16³ pass)."""
    sizes: list[int] = []

    def record(module, inputs, output):
        sizes.extend(t.numel() for t in (*inputs, output) if isinstance(t, torch.Tensor))

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    param = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros(1, 1, 16, 16, 16, device=param.device, dtype=param.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    return max(sizes) / 16**3
