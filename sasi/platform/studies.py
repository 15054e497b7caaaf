"""One Optuna study per shot count, and early stopping that waits for the supervised loss to fall.

Shot count is a **condition** of a search, not a dimension: F1 rises with N by construction, so a study that
sampled N would learn "more shots" and little else. ``sasi tune SPACE --shots 3 5 10`` (or ``shots:`` in the
YAML) runs one study per N on the same Ray cluster, under one MLflow parent run (child runs tagged ``shots``):

- Tune experiment ``<storage>/<space>/N<n>`` (its trials' Train runs ``<storage>/<space>-N<n>-<trial>``),
- mirrored Optuna study ``<space>-N<n>`` in ``<storage>/<space>-N<n>-optuna.db``.

Without shot counts a search is the single study it always was (``<storage>/<space>``, study ``<space>``).

ASHA's rungs are in supervised ``iteration``s (ISS steps run before iteration 1, so they never count). The first
rung (the grace period) is the first validation at or after ``max(ISS steps, 25 % of the iterations)``: a
configuration is not judged before its supervised loss had time to fall, and one that spent many steps on
self-supervision gets at least as many supervised ones before it is compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
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


def iss_steps(config, shape_zyx: tuple[int, int, int] | None = None) -> int:
    """Steps of initial self-supervision (ISS) ``config`` takes on one worker, as
    :meth:`sasi.train.ssl.SelfSupervision.iss_steps` counts them (windows of the train tomogram at stride W/2)."""
    p = config.pretrain
    if p.schedule != "initial":
        return 0
    if shape_zyx is None:
        shape_zyx = train_shape(config)
    if shape_zyx is None:
        return 0
    from sasi.train.crops import window_centres

    windows = len(window_centres(tuple(shape_zyx), config.data.patch, config.data.patch // 2))
    return p.epochs * math.ceil(windows / p.batch_size)


def train_shape(config) -> tuple[int, int, int] | None:
    """(z, y, x) of the training tomogram from its MRC header, or None when it cannot be read."""
    try:
        from sasi.dataset import load_dataset
        from sasi.platform.preflight import _mrc_shape

        ds = load_dataset(config.data.dataset)
        name = config.data.train_tomogram or ds.names("train")[0]
        return _mrc_shape(Path(config.data.dataset) / name / "tomogram.mrc")
    except Exception:  # noqa: BLE001 - then ISS is not known, and the 25 % floor alone applies
        return None


def longest_iss(space, config) -> int:
    """ISS steps of the longest self-supervision ``space`` can sample (largest epochs, smallest batch)."""
    from dataclasses import replace

    p = config.pretrain
    epochs, batch, schedule = [p.epochs], [p.batch_size], [p.schedule]
    for param in space.parameters:
        values = list(param.values) if param.type == "choice" else [param.low, param.high]
        if param.path == "pretrain.epochs":
            epochs += [int(v) for v in values]
        elif param.path == "pretrain.batch_size":
            batch += [int(v) for v in values]
        elif param.path == "pretrain.schedule":
            schedule += list(values)
    if "initial" not in schedule:
        return 0
    longest = replace(config, pretrain=replace(p, schedule="initial", epochs=max(epochs), batch_size=min(batch)))
    return iss_steps(longest)


def asha_grace(config, iss: int = 0) -> int:
    """First ASHA rung: the first validation at or after ``max(iss, EARLIEST_RUNG × iterations)`` (at most the
    last iteration, where ASHA then stops nothing)."""
    iterations = int(config.train.iterations)
    every = int(config.train.eval_every) or iterations
    floor = max(int(iss), math.ceil(EARLIEST_RUNG * iterations), 1)
    return min(iterations, every * math.ceil(floor / every))


def asha(config, space, reduction_factor: int = 2) -> Any:
    """ASHA on supervised ``iteration`` with :func:`asha_grace` past the space's longest ISS."""
    from ray.tune.schedulers import ASHAScheduler

    iterations = int(config.train.iterations)
    return ASHAScheduler(time_attr="iteration", max_t=iterations + 1,
                         grace_period=asha_grace(config, longest_iss(space, config)),
                         reduction_factor=reduction_factor)
