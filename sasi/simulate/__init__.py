"""Synthetic SHREC-style tomograms with exact ground truth (``sasi simulate``)."""

from sasi.simulate.recipes import RECIPES, SimulationConfig, get_recipe
from sasi.simulate.scene import Scene, place_particles
from sasi.simulate.templates import ParticleClass, builtin_templates, load_templates
from sasi.simulate.writer import simulate_dataset, simulate_tomogram

__all__ = [
    "RECIPES",
    "ParticleClass",
    "Scene",
    "SimulationConfig",
    "builtin_templates",
    "get_recipe",
    "load_templates",
    "place_particles",
    "simulate_dataset",
    "simulate_tomogram",
]
