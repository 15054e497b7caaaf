"""The DeepFinder 3D U-Net (Moebel et al. 2021), the SaSi* backbone (spec §2.2).

Encoder 32×2 → pool → 48×2 → pool → 64×4 (bottleneck); decoder upsample → conv(64, k2) →
concat 48-skip → 48×2 → upsample → conv(48, k2) → concat 32-skip → 32×2 → conv(n_classes, k1).
Every conv but the last is followed by ReLU; 'same' padding; no normalisation.
With 4 classes the network has 903,060 parameters (paper, Table 3).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sasi.errors import SasiError
from sasi.model.registry import register_model


def _conv_relu(c_in: int, c_out: int, kernel: int) -> list[nn.Module]:
    """Conv3d with TF/Keras 'same' padding followed by ReLU.

    For the even kernel 2 the single padding voxel goes after the data (as Keras does); it is
    padded explicitly to avoid PyTorch's even-kernel ``padding="same"`` warning (same result).
    """
    if kernel % 2:
        return [nn.Conv3d(c_in, c_out, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]
    before, after = (kernel - 1) // 2, kernel // 2
    pad = nn.ConstantPad3d((before, after) * 3, 0.0)
    return [pad, nn.Conv3d(c_in, c_out, kernel), nn.ReLU(inplace=True)]


def _stack(c_in: int, c_out: int, n: int) -> nn.Sequential:
    """``n`` 3×3×3 conv+ReLU layers, the first mapping ``c_in`` → ``c_out``."""
    layers = [m for i in range(n) for m in _conv_relu(c_in if i == 0 else c_out, c_out, 3)]
    return nn.Sequential(*layers)


HALO = 4  # voxels around a kept region: the k2 conv and two 3×3×3 convs reach 3; even, for the half-res grid


@register_model("deepfinder")
class DeepFinderUNet(nn.Module):
    """DeepFinder 3D U-Net returning logits (apply softmax outside).

    Parameters
    ----------
    n_classes
        Output channels (background included).
    in_channels
        Input channels (1 for tomograms).
    channels
        Widths of the two encoder levels and the bottleneck; DeepFinder uses (32, 48, 64).

    Spatial input sizes must be divisible by 4.
    """

    context = 36  # input voxels either side that one output voxel sees (-31..+34, rounded up to a multiple of 4)

    def __init__(self, n_classes: int, in_channels: int = 1, channels: tuple[int, int, int] = (32, 48, 64)):
        super().__init__()
        c1, c2, c3 = channels
        self.channels = tuple(channels)
        self.enc1 = _stack(in_channels, c1, 2)
        self.enc2 = _stack(c1, c2, 2)
        self.bottleneck = _stack(c2, c3, 4)
        self.pool = nn.MaxPool3d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.up2 = nn.Sequential(*_conv_relu(c3, c3, 2))
        self.dec2 = _stack(c3 + c2, c2, 2)
        self.up1 = nn.Sequential(*_conv_relu(c2, c2, 2))
        self.dec1 = _stack(c2 + c1, c1, 2)
        self.head = nn.Conv3d(c1, n_classes, 1)

    @staticmethod
    def embedding_dim(patch_size: int | tuple[int, int, int], channels: tuple[int, int, int] = (32, 48, 64)) -> int:
        """Length of the flattened bottleneck for a cubic (int) or ``(D, H, W)`` patch."""
        size = (patch_size,) * 3 if isinstance(patch_size, int) else tuple(patch_size)
        return channels[2] * (size[0] // 4) * (size[1] // 4) * (size[2] // 4)

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if x.dim() != 5 or any(s % 4 for s in x.shape[2:]):
            raise SasiError(f"DeepFinderUNet needs (B, C, D, H, W) input with D, H, W divisible by 4, got {tuple(x.shape)}")
        s1 = self.enc1(x)
        s2 = self.enc2(self.pool(s1))
        return self.bottleneck(self.pool(s2)), s1, s2

    def encode(self, x: Tensor) -> Tensor:
        """Bottleneck features ``(B, 64, D/4, H/4, W/4)``."""
        return self._encode(x)[0]

    def forward(self, x: Tensor, keep: tuple[slice, slice, slice] | None = None) -> Tensor:
        """Logits ``(B, n_classes, D, H, W)``; with ``keep`` (per axis a slice whose ends are multiples of 4) only
        that region's logits: the full-resolution decoder runs on it plus a halo of :data:`HALO` voxels, which gives
        the same values with fewer voxels computed (tiled inference keeps each tile's interior only)."""
        if keep is None:
            return self.forward_with_bottleneck(x)[0]
        b, s1, s2 = self._encode(x)
        d2 = self.dec2(torch.cat([self.up2(self.up(b)), s2], dim=1))
        lo = [max(k.start - HALO, 0) for k in keep]
        hi = [min(k.stop + HALO, n) for k, n in zip(keep, x.shape[2:])]
        half = tuple(slice(a // 2, z // 2) for a, z in zip(lo, hi))
        full = tuple(slice(a, z) for a, z in zip(lo, hi))
        d1 = self.dec1(torch.cat([self.up1(self.up(d2[(..., *half)])), s1[(..., *full)]], dim=1))
        return self.head(d1[(..., *(slice(k.start - a, k.stop - a) for k, a in zip(keep, lo)))])

    def forward_with_bottleneck(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and bottleneck features from one pass (contrastive + segmentation steps)."""
        b, s1, s2 = self._encode(x)
        d2 = self.dec2(torch.cat([self.up2(self.up(b)), s2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(self.up(d2)), s1], dim=1))
        return self.head(d1), b
