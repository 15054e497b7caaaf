"""Simulate tomograms and write them with ground truth in sasi's and the SHREC 2021 layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from sasi.config import to_dict
from sasi.dataset import Dataset, writing_dataset
from sasi.errors import SasiError
from sasi.io import write_mrc, write_particles
from sasi.io.particles import make_particles, voxels_to_angstrom
from sasi.simulate import imaging
from sasi.simulate.recipes import SimulationConfig
from sasi.simulate.scene import Scene, add_gold_beads, add_vesicle, place_particles
from sasi.simulate.templates import ParticleClass, builtin_templates, load_templates


@dataclass
class SimulatedTomogram:
    name: str
    volume: np.ndarray
    scene: Scene
    particles: pa.Table


def resolve_templates(config: SimulationConfig) -> list[ParticleClass]:
    if config.templates == "builtin":
        templates = builtin_templates(config.voxel_size)
        if config.classes:
            known = {t.name: t for t in templates}
            missing = [c for c in config.classes if c not in known]
            if missing:
                raise SasiError(f"unknown built-in class(es) {missing}; known: {sorted(known)}")
            templates = [known[c] for c in config.classes]
        return templates
    from sasi.simulate.fetch import template_folder

    folder = template_folder(config.templates, list(config.classes) or None)
    return load_templates(folder, config.voxel_size, list(config.classes) or None)


def simulate_tomogram(config: SimulationConfig, templates: list[ParticleClass], seed: int | np.random.SeedSequence,
                      name: str = "tomo") -> SimulatedTomogram:
    """One tomogram: place particles (+ distractors), then image it. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    shape = tuple(config.shape)
    extra = np.zeros(shape, np.float32)
    blocked = np.zeros(shape, bool)
    if config.gold_beads:
        gold, mask = add_gold_beads(shape, config.gold_beads, radius=2.5 * 10 / config.voxel_size, rng=rng)
        extra += gold
        blocked |= mask
    for _ in range(config.vesicles):
        ves, mask = add_vesicle(shape, rng)
        extra += ves
        blocked |= mask
    scene = place_particles(templates, shape, density=config.density, rng=rng, blocked=blocked)
    clean = scene.density + extra
    common = dict(snr=config.snr, rng=rng, tilt_range=config.tilt_range, defocus_um=config.defocus_um)
    if config.imaging == "wedge":
        volume = imaging.fast_wedge(clean, config.voxel_size, **common)
    else:
        volume = imaging.tilt_series(clean, config.voxel_size, tilt_step=config.tilt_step, **common)
    labels = [templates[c - 1].name for c in scene.classes]
    xyz = voxels_to_angstrom(np.asarray(scene.centres).reshape(-1, 3), config.voxel_size)
    return SimulatedTomogram(name, volume, scene, make_particles(name, labels, xyz))


def write_tomogram(folder: Path, tomo: SimulatedTomogram, voxel_size: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_mrc(folder / "tomogram.mrc", tomo.volume, voxel_size)
    write_mrc(folder / "labels.mrc", tomo.scene.labels, voxel_size)
    write_mrc(folder / "occupancy_mask.mrc", tomo.scene.instances, voxel_size)
    write_particles(tomo.particles, folder / "particles.parquet")
    write_particles(tomo.particles, folder / "particles.star", voxel_size=voxel_size, shape_zyx=tomo.volume.shape)
    # SHREC 2021: "<class> <x> <y> <z> <rotZ1> <rotX> <rotZ2>" in voxels, one line per instance id
    lines = []
    for label, c, e in zip(tomo.particles.column("label").to_pylist(), tomo.scene.centres, tomo.scene.eulers):
        z, y, x = np.round(c).astype(int)
        lines.append(f"{label} {x} {y} {z} {e[0]:.2f} {e[1]:.2f} {e[2]:.2f}")
    (folder / "particle_locations.txt").write_text("\n".join(lines) + "\n")


def default_workers() -> int:
    """Tomograms to simulate at once by default: one per 4 CPU cores (each worker's FFTs use the other three)."""
    import os

    return max(1, (os.cpu_count() or 1) // 4)


def simulate_dataset(out: str | Path, config: SimulationConfig, splits: dict[str, int], *, seed: int = 0,
                     recipe: str | None = None, preview: bool = False, progress: bool = True,
                     workers: int = 1) -> Dataset:
    """Simulate ``sum(splits)`` tomograms into ``out`` (written atomically: all or nothing).

    ``workers`` > 1 simulates that many tomograms at once in separate processes, sharing the CPU cores: the same
    particles, labels and noise draws; voxel values differ only by float rounding (FFT threading), as they already
    do between machines with different core counts."""
    from tqdm import tqdm

    templates = resolve_templates(config)
    names = {split: [f"{split}_{i:02d}" for i in range(n)] for split, n in splits.items()}
    flat = [n for group in names.values() for n in group]
    seeds = np.random.SeedSequence(seed).spawn(len(flat))
    with writing_dataset(out) as staging:
        jobs = [(config, templates, s, name, staging / name, preview) for name, s in zip(flat, seeds)]
        bar = tqdm(total=len(jobs), desc="simulate", disable=not progress)
        if workers > 1 and len(jobs) > 1:
            import multiprocessing
            import os
            from concurrent.futures import ProcessPoolExecutor

            threads = max(1, (os.cpu_count() or 1) // workers)
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_worker_threads, initargs=(threads,)) as pool:
                for _ in pool.map(_simulate_and_write, jobs):
                    bar.update()
        else:
            for job in jobs:
                _simulate_and_write(job)
                bar.update()
        bar.close()
        dataset = Dataset(root=staging, classes=[t.name for t in templates],
                          radii={t.name: round(t.radius * config.voxel_size, 2) for t in templates},
                          voxel_size=config.voxel_size, splits=names,
                          meta={"recipe": recipe, "seed": seed, "simulation": to_dict(config)})
        dataset.save()
    dataset.root = Path(out)
    return dataset


def _worker_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _simulate_and_write(job: tuple) -> None:
    """One tomogram of :func:`simulate_dataset`, simulated and written to its folder (a worker's task)."""
    config, templates, seed, name, folder, preview = job
    tomo = simulate_tomogram(config, templates, seed, name)
    write_tomogram(folder, tomo, config.voxel_size)
    if preview:
        from sasi.plots import slice_with_particles

        slice_with_particles(tomo.volume, tomo.particles, config.voxel_size, folder / "preview.png",
                             instances=tomo.scene.instances, title=f"{name}: true particles outlined")
