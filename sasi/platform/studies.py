"""One Optuna study per shot count, and early stopping that waits for the supervised loss to fall.

Shot count is a **condition** of a search, not a dimension: F1 rises with N by construction, so a study that
sampled N would learn "more shots" and little else. ``sasi tune SPACE --shots 3 5 10`` (or ``shots:`` in the
YAML) runs one study per N on the same Ray cluster, under one MLflow parent run (child runs tagged ``shots``):

- Tune experiment ``<storage>/<space>/N<n>`` (its trials' Train runs ``<storage>/<space>-N<n>-<trial>``),
- mirrored Optuna study ``<space>-N<n>`` in ``<storage>/<space>-N<n>-optuna.db``.

Without shot counts a search is the single study it always was (``<storage>/<space>``, study ``<space>``).

ASHA's rungs are in supervised ``iteration``s: ISS steps run before iteration 1 and never count, so every rung is
past ISS. The first rung (the grace period) is the first validation at or after 25 % of the iterations, so a
configuration is not judged before its supervised loss had time to fall; the rule is the same for every method,
so SaSi and its baseline are searched with the same early stopping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

EARLIEST_RUNG = 0.25  # fraction of train.iterations before the first ASHA rung


@dataclass(frozen=True)
class Study:
    method: str  # the search space's name
    shots: int
    name: str  # Optuna study, Train-run prefix, MLflow tag ``sasi.study``
    storage_path: str  # Tune ``storage_path``
    tune_name: str  # Tune experiment name (folder under storage_path)
    single: bool = False  # the search's only study, laid out as before shot counts were conditions

    @property
    def path(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.tune_name}"


def studies_of(space, storage: str, shots: list[int] | tuple[int, ...] | None) -> list[Study]:
    """The studies of ``space``: one per shot count, or its single study when none are given."""
    if not shots:
        return [Study(space.name, int(space.config().data.shots), space.name, storage, space.name, single=True)]
    return [Study(space.name, int(n), f"{space.name}-N{n}", f"{storage.rstrip('/')}/{space.name}", f"N{n}")
            for n in shots]


def asha_grace(config) -> int:
    """First ASHA rung: the first validation at or after ``EARLIEST_RUNG × iterations`` supervised iterations (at
    most the last iteration, where ASHA then stops nothing)."""
    iterations = int(config.train.iterations)
    every = int(config.train.eval_every) or iterations
    floor = max(math.ceil(EARLIEST_RUNG * iterations), 1)
    return min(iterations, every * math.ceil(floor / every))


def asha(config, reduction_factor: int = 2) -> Any:
    """ASHA on supervised ``iteration`` with :func:`asha_grace` (the same rule for every method)."""
    from ray.tune.schedulers import ASHAScheduler

    iterations = int(config.train.iterations)
    return ASHAScheduler(time_attr="iteration", max_t=iterations + 1, grace_period=asha_grace(config),
                         reduction_factor=reduction_factor)
