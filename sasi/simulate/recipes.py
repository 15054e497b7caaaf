"""Simulation settings and the named, versioned benchmark recipes every benchmark uses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Literal

from sasi.errors import SasiError
from sasi.simulate.fetch import POLNET

SHREC_CLASSES = ("1s3x", "3qm1", "3gl1", "3h84", "2cg9", "3d2f", "1u6g", "3cf3", "1bxn", "1qvr", "4cr2", "5mrc")


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """How one synthetic tomogram is made."""

    shape: tuple[int, int, int] = (64, 128, 128)  # z, y, x voxels
    voxel_size: float = 10.0  # Å
    snr: float = 0.1  # signal variance / noise variance (per projection for "tiltseries")
    density: float = 0.1  # fraction of the volume covered by particle masks
    imaging: Literal["wedge", "tiltseries"] = "wedge"
    tilt_range: float = 60.0  # ± degrees
    tilt_step: float = 3.0  # degrees (tilt-series path)
    defocus_um: float = 3.0
    templates: str = "builtin"  # "builtin", "polnet-10A" (fetched on first use) or a folder of MRC/PDB/mmCIF
    classes: tuple[str, ...] = ()  # subset of template names; empty = all
    gold_beads: int = 0  # fiducial distractors
    vesicles: int = 0  # membrane distractors


@dataclass
class Recipe:
    """A named benchmark: simulation settings and how many tomograms go to each split."""

    name: str
    simulation: SimulationConfig
    splits: dict[str, int] = field(default_factory=lambda: {"train": 1, "val": 1, "test": 2})
    description: str = ""


RECIPES: dict[str, Recipe] = {
    "tiny-v1": Recipe(
        "tiny-v1",
        SimulationConfig(shape=(48, 96, 96), snr=0.5, density=0.12),
        {"train": 1, "val": 1, "test": 2},
        "Built-in 4-class templates, fast Fourier-wedge imaging; for the default job and CPU tests.",
    ),
    "shrec-like-v1": Recipe(
        "shrec-like-v1",
        SimulationConfig(shape=(128, 256, 256), snr=0.05, density=0.12, imaging="tiltseries",
                         templates=POLNET, classes=SHREC_CLASSES, gold_beads=8),
        {"train": 1, "val": 1, "test": 4},
        "SHREC 2021-like: the 12 SHREC classes at 10 Å, real tilt series ±60° step 3°, gold distractors.",
    ),
    "shrec-like-fast-v1": Recipe(
        "shrec-like-fast-v1",
        SimulationConfig(shape=(64, 128, 128), snr=0.1, density=0.12, templates=POLNET,
                         classes=SHREC_CLASSES),
        {"train": 1, "val": 1, "test": 2},
        "Small CPU-friendly variant of shrec-like-v1 (Fourier-wedge imaging) for --quick runs.",
    ),
}


def get_recipe(name: str, templates: str | None = None) -> Recipe:
    """Look up a recipe; ``templates`` (or ``$SASI_TEMPLATES``) overrides its template folder."""
    if name not in RECIPES:
        raise SasiError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    recipe = RECIPES[name]
    override = templates or (os.environ.get("SASI_TEMPLATES") if recipe.simulation.templates != "builtin" else None)
    if override:
        recipe = replace(recipe, simulation=replace(recipe.simulation, templates=override))
    return recipe
