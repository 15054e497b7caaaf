"""Image formation: a fast Fourier-space path and a real tilt-series path.

Both apply the missing wedge of a single-axis tilt series (tilt axis = y), a phase-contrast CTF at
300 kV and white Gaussian noise at a signal-to-noise ratio ``snr`` (signal variance / noise variance).

Contrast differs between the two paths (see :data:`PARTICLES_DARK`): the Fourier path multiplies by :func:`ctf`
(negative at low frequency: particles darker than the background, as in underfocused cryo-ET), the tilt-series
path by torch-ctf's CTF, which is positive at low frequency: its reconstructions show particles *bright*.
"""

from __future__ import annotations

import numpy as np
from scipy import fft

VOLTAGE_KV = 300.0
CS_MM = 2.7
AMPLITUDE_CONTRAST = 0.07

# Whether particles (positive density) come out darker than the background, per ``SimulationConfig.imaging``.
# The tilt-series path's opposite sign is torch-ctf's convention; it is recorded here rather than changed because
# the versioned recipes' data (shrec-like-v1) depend on it. Whatever models the imaging (template matching) reads it.
PARTICLES_DARK = {"wedge": True, "tiltseries": False}


def electron_wavelength(voltage_kv: float = VOLTAGE_KV) -> float:
    """Relativistic electron wavelength in Å."""
    v = voltage_kv * 1e3
    return 12.2643 / np.sqrt(v * (1 + 0.978466e-6 * v))


def ctf(k: np.ndarray, defocus_um: float, voltage_kv: float = VOLTAGE_KV) -> np.ndarray:
    """Isotropic phase-contrast CTF at spatial frequency ``k`` (1/Å); negative at low frequency (dark particles)."""
    lam = electron_wavelength(voltage_kv)
    k2 = k * k
    chi = k2 * (np.pi * lam * defocus_um * 1e4 - k2 * (0.5 * np.pi * CS_MM * 1e7 * lam**3)).astype(k.dtype)
    return -(np.sqrt(1 - AMPLITUDE_CONTRAST**2) * np.sin(chi) + AMPLITUDE_CONTRAST * np.cos(chi)).astype(k.dtype)


def add_noise(signal: np.ndarray, snr: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise so that var(signal) / var(noise) = ``snr``."""
    signal = np.asarray(signal, dtype=np.float32)
    sigma = np.float32(np.sqrt(signal.var() / snr)) if snr > 0 else np.float32(0.0)
    noise = rng.standard_normal(signal.shape, dtype=np.float32)
    noise *= sigma
    return noise + signal


def fast_wedge(volume: np.ndarray, voxel_size: float, *, snr: float, rng: np.random.Generator,
               tilt_range: float = 60.0, defocus_um: float = 3.0) -> np.ndarray:
    """Missing wedge (±``tilt_range``° about y) and 3D CTF in Fourier space, then noise. Any shape."""
    spectrum = fft.rfftn(np.asarray(volume, dtype=np.float32), workers=-1)
    kz = np.fft.fftfreq(volume.shape[0], d=voxel_size).astype(np.float32)[:, None, None]
    ky = np.fft.fftfreq(volume.shape[1], d=voxel_size).astype(np.float32)[None, :, None]
    kx = np.fft.rfftfreq(volume.shape[2], d=voxel_size).astype(np.float32)[None, None, :]
    # with tilt axis y, measured directions span ±tilt_range from z in the x-z plane
    wedge = np.abs(kz) <= np.tan(np.deg2rad(tilt_range)) * np.abs(kx) + 1e-12
    wedge |= (kx == 0) & (kz == 0)
    k = np.sqrt(kz**2 + ky**2 + kx**2)
    spectrum *= np.where(wedge, ctf(k, defocus_um), np.float32(0))
    filtered = fft.irfftn(spectrum, s=volume.shape, workers=-1)
    return add_noise(filtered, snr, rng)


def tilt_series(volume: np.ndarray, voxel_size: float, *, snr: float, rng: np.random.Generator,
                tilt_range: float = 60.0, tilt_step: float = 3.0, defocus_um: float = 3.0,
                defocus_spread_um: float = 0.2, device: str | None = None) -> np.ndarray:
    """Project each tilt, apply per-tilt CTF and noise, back-project (teamtomo torch-fourier-slice).

    The volume is padded to a cube for projection and cropped back. ``snr`` is per projection.
    Needs the ``tiltseries`` extra (``torch-fourier-slice``, ``torch-ctf``).
    """
    import torch
    from scipy.spatial.transform import Rotation
    from torch_ctf import calculate_ctf_2d
    from torch_fourier_slice import backproject_2d_to_3d, project_3d_to_2d

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    side = max(volume.shape)
    pads = [((side - s) // 2, side - s - (side - s) // 2) for s in volume.shape]
    cube = torch.as_tensor(np.pad(volume, pads), dtype=torch.float32, device=device)
    angles = np.arange(-tilt_range, tilt_range + 1e-6, tilt_step)
    rotations = torch.as_tensor(Rotation.from_euler("y", angles[:, None], degrees=True).as_matrix(),
                                dtype=torch.float32, device=device)  # act on xyz vectors
    projections = project_3d_to_2d(cube, rotations, pad_factor=2.0)
    defocus = defocus_um + rng.normal(0, defocus_spread_um, len(angles))
    ctfs = calculate_ctf_2d(defocus=torch.as_tensor(defocus, dtype=torch.float32), astigmatism=0.0,
                            astigmatism_angle=0.0, voltage=VOLTAGE_KV, spherical_aberration=CS_MM,
                            amplitude_contrast=AMPLITUDE_CONTRAST, phase_shift=0.0, pixel_size=voxel_size,
                            image_shape=(side, side), rfft=True, fftshift=False).to(device)
    projections = torch.fft.irfft2(torch.fft.rfft2(projections) * ctfs, s=(side, side))
    noisy = np.stack([add_noise(p, snr, rng) for p in projections.cpu().numpy()])
    recon = backproject_2d_to_3d(torch.as_tensor(noisy, device=device), rotations, pad_factor=2.0)
    crop = tuple(slice(a, a + s) for (a, _), s in zip(pads, volume.shape))
    return recon.cpu().numpy()[crop].astype(np.float32)
