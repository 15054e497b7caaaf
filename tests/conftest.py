"""Shared fixtures: small generated tomograms (never fetched data)."""

import os
from pathlib import Path

import pytest
from _helpers import RAY_TEST_ENV

SHARED = Path(__file__).resolve().parents[2] / "shared"
POLNET = SHARED / "structures" / "polnet-10A"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The built-in tiny-v1 recipe: 1 train, 1 val, 2 test tomograms of 48×96×96 at 10 Å."""
    from sasi.simulate import get_recipe, simulate_dataset

    recipe = get_recipe("tiny-v1")
    out = tmp_path_factory.mktemp("data") / "tiny"
    return simulate_dataset(out, recipe.simulation, recipe.splits, seed=0, recipe=recipe.name, progress=False)


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray cluster (2 CPUs, dashboard on: Train needs it) for one test module."""
    import ray

    os.environ.update(RAY_TEST_ENV)
    ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False)
    yield ray
    ray.shutdown()
