"""Place rotated particle templates into a volume without overlaps, keeping exact ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from sasi.simulate.templates import MASK_LEVEL, ParticleClass


@dataclass
class Scene:
    """Noise-free density with its class map (0 = background) and instance map (0 = none, i = particle i)."""

    density: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    centres: list[np.ndarray] = field(default_factory=list)  # z, y, x voxels (mask centroid)
    classes: list[int] = field(default_factory=list)  # 1-based class index per particle
    eulers: list[np.ndarray] = field(default_factory=list)  # ZXZ degrees, SHREC convention


def place_particles(templates: list[ParticleClass], shape: tuple[int, int, int], *, density: float,
                    rng: np.random.Generator, blocked: np.ndarray | None = None,
                    max_failures: int = 200) -> Scene:
    """Fill ``shape`` with randomly rotated particles until their masks cover ``density`` of the volume.

    Classes are drawn in turn so every class gets (nearly) the same count. A candidate whose mask
    overlaps an earlier particle (or ``blocked`` voxels) is rejected; placement stops after
    ``max_failures`` consecutive rejections.
    """
    shape = tuple(int(s) for s in shape)
    scene = Scene(np.zeros(shape, np.float32), np.zeros(shape, np.int16), np.zeros(shape, np.int32))
    occupied = np.zeros(shape, bool) if blocked is None else blocked.copy()
    target = density * np.prod(shape)
    covered, failures, turn = 0, 0, 0
    while covered < target and failures < max_failures:
        cls = turn % len(templates)
        box, mask, euler = _rotated(templates[cls], rng)
        half = np.asarray(box.shape) // 2
        if np.any(np.asarray(shape) <= 2 * half):
            failures += 1
            continue
        corner = np.array([rng.integers(0, s - 2 * h) for s, h in zip(shape, half)])
        sl = tuple(slice(c, c + b) for c, b in zip(corner, box.shape))
        if occupied[sl][mask].any():
            failures += 1
            continue
        failures, turn = 0, turn + 1
        pid = len(scene.centres) + 1
        scene.density[sl] += box
        scene.labels[sl][mask] = cls + 1
        scene.instances[sl][mask] = pid
        occupied[sl] |= mask
        covered += int(mask.sum())
        scene.centres.append(corner + np.asarray(ndimage.center_of_mass(mask)))
        scene.classes.append(cls + 1)
        scene.eulers.append(euler)
    return scene


def _rotated(template: ParticleClass, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate a template about its box centre by a uniformly random rotation.

    The returned occupancy mask is the density mask plus a core ball (half the equivalent radius)
    at the centre, so hollow particles (rings, cages) contain their own centre, as the dilated
    SHREC 2021 occupancy masks do.
    """
    rot = Rotation.random(random_state=rng)
    matrix = rot.as_matrix()  # acts on z, y, x index vectors here
    centre = (np.asarray(template.density.shape) - 1) / 2
    box = ndimage.affine_transform(template.density, matrix, offset=centre - matrix @ centre, order=1)
    zz, yy, xx = np.indices(box.shape) - centre[:, None, None, None]
    core = zz**2 + yy**2 + xx**2 <= (0.5 * template.radius) ** 2
    return box, (box > MASK_LEVEL) | core, rot.inv().as_euler("ZXZ", degrees=True)


def add_gold_beads(shape: tuple[int, int, int], count: int, radius: float, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Dense spherical fiducials (distractors): returns their density and a blocked-voxel mask."""
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    density = np.zeros(shape, np.float32)
    for _ in range(count):
        c = [rng.uniform(radius, s - radius) for s in shape]
        d2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
        density += 4.0 * (d2 <= radius**2)
    return density, density > 0


def add_vesicle(shape: tuple[int, int, int], rng: np.random.Generator, thickness: float = 1.5
                ) -> tuple[np.ndarray, np.ndarray]:
    """One membrane vesicle (a spherical shell) as a distractor: density and blocked mask."""
    radius = rng.uniform(0.15, 0.3) * min(shape[1:])
    c = [rng.uniform(0, s) for s in shape]
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
    shell = np.abs(d - radius) <= thickness
    return 0.8 * shell.astype(np.float32), shell
