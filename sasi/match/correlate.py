"""FFT template matching on the GPU (or CPU): the best normalised cross-correlation per voxel and class.

For each rotation ``R`` of a template ``t`` (a small odd cube, centre at its middle voxel) the score at a
voxel ``x`` is

    NCC_R(x) = Σ_u (f ∗ R t)(u) · v(x + u)  /  ( ‖f ∗ R t‖ · √N_M · σ_M(x) )

with ``v`` the tomogram (zero mean, unit variance), ``f`` the imaging filter (missing wedge of a ±tilt
single-axis series about y, times the CTF or a contrast flip, the sign set by whether particles are dark in the
tomogram, DC removed) applied to the template in
Fourier space, and ``σ_M(x)`` the local standard deviation of ``v`` under a sphere of ``N_M`` voxels
that holds the template. The sphere makes ``σ_M`` the same for every rotation, so it is computed once
per class and the division happens after the maximum over rotations (as with pytom-match-pick's
spherical masks).

Throughput: the template's spectrum on the tomogram's Fourier grid is computed directly from the
small rotated box by three batched DFT matrix products (no zero-padded forward FFT), so a rotation
costs one batched inverse real FFT of the tomogram's size plus element-wise work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sasi.simulate.imaging import ctf


@dataclass
class Imaging:
    """What the template must go through to look like the tomogram (``None``: no missing wedge / no CTF)."""

    tilt_range: float | None = 60.0  # ± degrees about y
    defocus_um: float | None = 3.0  # CTF at 300 kV; None: no CTF
    dark: bool = True  # particles darker than the background; False flips the filter's sign (CTF or not)


def filter_spectrum(shape: tuple[int, int, int], voxel_size: float, imaging: Imaging) -> np.ndarray:
    """Real filter on the rfft grid of ``shape``: wedge × CTF (or ±1), zero at DC."""
    kz = np.fft.fftfreq(shape[0], d=voxel_size)[:, None, None]
    ky = np.fft.fftfreq(shape[1], d=voxel_size)[None, :, None]
    kx = np.fft.rfftfreq(shape[2], d=voxel_size)[None, None, :]
    out = np.ones((shape[0], shape[1], shape[2] // 2 + 1), np.float64)
    if imaging.tilt_range is not None:
        wedge = np.abs(kz) <= np.tan(np.deg2rad(imaging.tilt_range)) * np.abs(kx) + 1e-12
        out *= wedge | ((kx == 0) & (kz == 0))
    if imaging.defocus_um is not None:
        out *= ctf(np.sqrt(kz**2 + ky**2 + kx**2), imaging.defocus_um)  # negative at low frequency: dark
        if not imaging.dark:
            out *= -1
    elif imaging.dark:
        out *= -1
    out[0, 0, 0] = 0
    return out.astype(np.float32)


def sphere_radius(template: np.ndarray, level: float = 0.1) -> float:
    """Radius (voxels) of the smallest centred sphere holding every voxel above ``level`` × max."""
    centre = (np.asarray(template.shape) - 1) / 2
    idx = np.argwhere(template > level * template.max())
    return float(np.sqrt(((idx - centre) ** 2).sum(1)).max()) + 1.0


class Matcher:
    """Holds one tomogram's spectrum on a device; :meth:`score` matches one template over rotations."""

    def __init__(self, volume: np.ndarray, voxel_size: float, imaging: Imaging, device: torch.device | str,
                 batch: int = 16):
        self.device = torch.device(device)
        self.shape = tuple(int(s) for s in volume.shape)
        self.batch = batch
        v = torch.as_tensor(np.array(volume, dtype=np.float32), device=self.device)
        v = (v - v.mean()) / v.std().clamp_min(1e-12)
        self.v = v
        self.spectrum = torch.fft.rfftn(v)
        filt = torch.as_tensor(filter_spectrum(self.shape, voxel_size, imaging), device=self.device)
        self.filtered = self.spectrum * filt  # f applied to the template = f applied to the volume (f real)
        n = math.prod(self.shape)
        kx = self.shape[2] // 2 + 1
        w = torch.full((kx,), 2.0, device=self.device)
        w[0] = 1.0
        if self.shape[2] % 2 == 0:
            w[-1] = 1.0
        self.norm_weight = filt**2 * w / n  # Parseval on the half spectrum: ‖f∗t‖² = Σ |T|² · this
        self._dft: dict[tuple[int, int], torch.Tensor] = {}

    def _matrix(self, axis: int, box: int) -> torch.Tensor:
        """``(box, K)`` complex DFT matrix: sample ``j`` (centred at the box middle) → frequency ``k``."""
        if (axis, box) not in self._dft:
            size = self.shape[axis]
            k = np.arange(size // 2 + 1) if axis == 2 else np.arange(size)
            j = np.arange(box) - (box - 1) / 2
            m = np.exp(-2j * np.pi * np.outer(j, k) / size)
            self._dft[axis, box] = torch.as_tensor(m.astype(np.complex64), device=self.device)
        return self._dft[axis, box]

    def local_std(self, radius: float) -> tuple[torch.Tensor, int]:
        """σ of the volume under a centred sphere of ``radius`` voxels at every voxel, and the sphere's voxel count."""
        grids = [torch.fft.fftfreq(s, d=1.0 / s, device=self.device) for s in self.shape]  # wrapped offsets
        zz, yy, xx = torch.meshgrid(*grids, indexing="ij")
        mask = ((zz**2 + yy**2 + xx**2) <= radius**2).float()
        count = int(mask.sum().item())
        m = torch.fft.rfftn(mask).conj()
        mean = torch.fft.irfftn(m * self.spectrum, s=self.shape) / count
        mean_sq = torch.fft.irfftn(m * torch.fft.rfftn(self.v * self.v), s=self.shape) / count
        return (mean_sq - mean * mean).clamp_min(1e-6).sqrt(), count

    def score(self, template: np.ndarray, rotations: np.ndarray, radius: float | None = None) -> torch.Tensor:
        """Best NCC over ``rotations`` (``(n, 3, 3)``, acting on z, y, x) at every voxel, on the device."""
        template = np.asarray(template, np.float32)
        if len(set(template.shape)) != 1 or template.shape[0] % 2 == 0:
            raise ValueError(f"templates must be odd cubes, got {template.shape}")
        radius = radius or sphere_radius(template)
        pad = max(0, math.ceil(radius) - template.shape[0] // 2)  # the box must hold the sphere
        t = torch.as_tensor(np.pad(template, pad), device=self.device)
        box = t.shape[0]
        offsets = torch.arange(box, device=self.device, dtype=torch.float32) - (box - 1) / 2
        sphere = ((offsets[:, None, None] ** 2 + offsets[None, :, None] ** 2 + offsets[None, None, :] ** 2)
                  <= radius**2).float()
        inside = float(sphere.sum())
        sigma, count = self.local_std(radius)
        mats = torch.as_tensor(np.asarray(rotations, np.float32), device=self.device)
        best = torch.full(self.shape, -torch.inf, device=self.device)
        ez, ey, ex = (self._matrix(a, box) for a in range(3))
        for start in range(0, len(mats), self.batch):
            boxes = rotate(t, mats[start:start + self.batch])  # (B, b, b, b)
            mean = (boxes * sphere).sum((1, 2, 3), keepdim=True) / inside  # no host sync (unlike boolean indexing)
            boxes = (boxes - mean) * sphere  # zero mean under the sphere
            spec = _dft3(boxes, ez, ey, ex)  # (B, Z, Y, X//2+1)
            norm = ((spec.real**2 + spec.imag**2) * self.norm_weight).sum((1, 2, 3)).clamp_min(1e-12).sqrt()
            corr = torch.fft.irfftn(spec.conj() * self.filtered, s=self.shape, dim=(1, 2, 3))
            best = torch.maximum(best, (corr / norm[:, None, None, None]).amax(0))
        return best / (sigma * math.sqrt(count))


def rotate(template: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """``template`` (odd cube) rotated about its centre by each matrix (acting on z, y, x), trilinear."""
    n = len(mats)
    flip = mats.flip(1).flip(2)  # the same rotation acting on x, y, z (grid_sample's order)
    theta = torch.cat([flip.transpose(1, 2), torch.zeros(n, 3, 1, device=mats.device)], 2)  # output → input
    size = (n, 1, *template.shape)
    grid = F.affine_grid(theta, size, align_corners=True)
    return F.grid_sample(template.expand(size), grid, mode="bilinear", padding_mode="zeros", align_corners=True)[:, 0]


def _dft3(boxes: torch.Tensor, ez: torch.Tensor, ey: torch.Tensor, ex: torch.Tensor) -> torch.Tensor:
    """Spectrum of each (centred) box on the tomogram's rfft grid: three batched matrix products."""
    s = boxes.to(torch.complex64) @ ex  # (B, bz, by, Kx)
    s = (s.transpose(2, 3) @ ey).transpose(2, 3)  # (B, bz, Y, Kx)
    s = (s.permute(0, 2, 3, 1) @ ez).permute(0, 3, 1, 2)  # (B, Z, Y, Kx)
    return s.contiguous()
