"""Near-uniform rotation sets for template matching, without symmetry reduction.

A rotation is a direction (where the template's z axis goes) and an in-plane angle about it.
Directions come from a Fibonacci sphere with about ``4π / Δ²`` points (spacing ≈ Δ), in-plane angles
in steps of ``360 / ceil(360 / Δ)``. At Δ = 10° that is 413 × 36 = 14 868 rotations, the count of a
symmetry-free 10° search (pytom-match-pick's 12.85° list has 7 112; the count grows as Δ⁻³).
"""

from __future__ import annotations

import math

import numpy as np

from sasi.errors import SasiError


def rotation_count(step_deg: float) -> int:
    n_dir, n_psi = _counts(step_deg)
    return n_dir * n_psi


def rotations(step_deg: float) -> np.ndarray:
    """``(n, 3, 3)`` rotation matrices (acting on z, y, x vectors) sampling SO(3) at about ``step_deg``."""
    n_dir, n_psi = _counts(step_deg)
    i = np.arange(n_dir) + 0.5
    cos_theta = 1 - 2 * i / n_dir
    phi = np.pi * (1 + 5**0.5) * i
    theta = np.arccos(np.clip(cos_theta, -1, 1))
    psi = np.arange(n_psi) * (2 * np.pi / n_psi)
    # R = Rz(phi) · Ry(theta) · Rz(psi) in x, y, z; then reorder to act on z, y, x vectors
    out = np.einsum("dij,djk,pkl->dpil", _rz(phi), _ry(theta), _rz(psi)).reshape(-1, 3, 3)
    return out[:, ::-1, ::-1].copy()


def _counts(step_deg: float) -> tuple[int, int]:
    if not 0 < step_deg <= 180:
        raise SasiError(f"angular step must be in (0, 180] degrees, got {step_deg}")
    step = math.radians(step_deg)
    return max(1, math.ceil(4 * math.pi / step**2)), max(1, math.ceil(360 / step_deg - 1e-9))


def _rz(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s, o, z = np.cos(a), np.sin(a), np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)
