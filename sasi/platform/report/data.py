"""What a suite report shows: its trials (MLflow child runs) and the suite's results, as plain data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

GRID = ("variant", "shots", "seed")
TRIAL_PNGS = ("training_curves.png", "slice.png", "per_class_f1.png")
SEARCH_PNGS = {"param_importances.png": "parameter importances (PED-ANOVA)",  # a search's parent run
               "parallel_coordinates.png": "parallel coordinates of the complete trials",
               "search_f1_vs_shots.png": "test class-aware F1 against shots per class, each study's best "
                                         "configuration (mean ± 95% CI over the confirmation seeds)"}
SEARCH_SUMMARY = "search.json"  # a search's per-shot-count summary (sasi.platform.confirm)
# tags or params that tell how many GPUs one trial held (first found wins; see ``Trial.gpus``)
GPU_KEYS = ("sasi.gpus", "gpus_per_trial", "resources.gpus_per_trial")


def as_number(value: Any) -> float:
    """``value`` as a float, or infinity (sorts last) when it is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf


def gpus_of(values: dict[str, str]) -> float | None:
    """GPUs per trial from the first of :data:`GPU_KEYS` in ``values`` that holds a number."""
    for key in GPU_KEYS:
        value = values.get(key)
        if value not in (None, ""):
            try:
                return float(value)
            except ValueError:
                pass
    return None


@dataclass
class Trial:
    """One trial (MLflow child run)."""

    run_id: str
    name: str
    status: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    start_ms: int | None = None
    end_ms: int | None = None
    images: dict[str, bytes] = field(default_factory=dict)  # file name → PNG bytes

    def grid(self, key: str) -> Any:
        value = self.tags.get(key, self.params.get(f"sampled.{key}"))
        if key in ("shots", "seed") and value is not None:
            try:
                return int(float(value))
            except ValueError:
                return value
        return value

    def grid_key(self) -> tuple[str, float, float]:
        """(variant, shots, seed), sortable."""
        return str(self.grid("variant")), as_number(self.grid("shots")), as_number(self.grid("seed"))

    @property
    def hours(self) -> float:
        if not self.start_ms or not self.end_ms:
            return math.nan
        return max(0.0, (self.end_ms - self.start_ms) / 3.6e6)

    @property
    def gpus(self) -> float | None:
        return gpus_of({**self.params, **self.tags})


@dataclass
class SuiteData:
    """Everything a report shows, from an MLflow store and/or the suite's files."""

    name: str
    source: str
    results: pd.DataFrame  # one row per trial
    trials: list[Trial] = field(default_factory=list)
    tracking_uri: str | None = None
    parent_id: str | None = None
    parent_status: str | None = None
    parent_tags: dict[str, str] = field(default_factory=dict)
    parent_params: dict[str, str] = field(default_factory=dict)
    started: int | None = None  # ms since the epoch
    notes: list[str] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)  # the parent run's SEARCH_PNGS
    search: dict[str, Any] | None = None  # a search's SEARCH_SUMMARY (one study per shot count)


def frame_from_trials(trials: list[Trial]) -> pd.DataFrame:
    """The results table (one row per trial) from the runs alone, when the suite left no usable parquet."""
    rows = []
    for t in trials:
        row = {k: t.grid(k) for k in GRID}
        row.update({k: v for k, v in t.metrics.items() if k.startswith(("test_", "val_"))})
        row["iteration"] = t.metrics.get("iteration")
        row["error"] = "" if t.status in ("FINISHED", "RUNNING") else t.status
        row["run_id"] = t.run_id
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "test_class_f1" not in frame:
        frame["test_class_f1"] = math.nan
    return frame
