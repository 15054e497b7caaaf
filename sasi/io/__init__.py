"""Tomogram (MRC) and particle-table (Parquet, CSV, STAR) input/output."""

from sasi.io.mrc import Tomogram, read_mrc, write_mrc
from sasi.io.particles import (
    PARTICLE_SCHEMA,
    particles_to_voxels,
    read_particles,
    validate_particles,
    write_particles,
)
from sasi.io.atomic import atomic_write

__all__ = [
    "PARTICLE_SCHEMA",
    "Tomogram",
    "atomic_write",
    "particles_to_voxels",
    "read_mrc",
    "read_particles",
    "validate_particles",
    "write_mrc",
    "write_particles",
]
