"""The report's numbers: F1 per class and compute (trial hours, GPU-hours) per variant."""

from __future__ import annotations

import math

import pandas as pd

from sasi.platform.report.data import SuiteData, gpus_of
from sasi.platform.summary import ci95


def _per_class_columns(results: pd.DataFrame, split: str = "test") -> list[str]:
    return sorted(c for c in results.columns if c.startswith(f"{split}_class_f1.") and results[c].notna().any())


def per_class_table(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Mean and 95 % CI of class-aware F1 per class for each (variant, shots), long format."""
    rows = []
    columns = _per_class_columns(results, split)
    for (variant, shots), group in results.groupby(["variant", "shots"], sort=True):
        for column in columns:
            rows.append({"variant": variant, "shots": shots, "class": column.split(".", 1)[1],
                         "f1_mean": group[column].mean(), "f1_ci95": ci95(group[column])})
    return pd.DataFrame(rows, columns=["variant", "shots", "class", "f1_mean", "f1_ci95"])


def compute_table(data: SuiteData) -> pd.DataFrame:
    """Per variant: trials, trial hours (wall clock of the child runs) and GPU-hours (when GPUs are logged)."""
    gpus_default = gpus_of(data.parent_params)
    rows = []
    for t in data.trials:
        gpus = t.gpus if t.gpus is not None else gpus_default
        rows.append({"variant": t.grid("variant"), "hours": t.hours,
                     "gpu_hours": t.hours * gpus if gpus is not None else math.nan,
                     "gpus_known": gpus is not None})
    if not rows:
        return pd.DataFrame(columns=["variant", "trials", "hours", "gpu_hours"])
    frame = pd.DataFrame(rows)
    out = frame.groupby("variant", sort=True).agg(trials=("hours", "size"), hours=("hours", "sum"),
                                                  gpu_hours=("gpu_hours", "sum"), known=("gpus_known", "all"))
    out.loc[~out["known"], "gpu_hours"] = math.nan
    return out.drop(columns="known").reset_index()


def with_total(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`compute_table` and a ``total`` row (GPU-hours unknown unless known for every variant)."""
    total = {"variant": "total", "trials": table["trials"].sum(), "hours": table["hours"].sum(),
             "gpu_hours": table["gpu_hours"].sum(skipna=False)}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def compute_metrics(table: pd.DataFrame) -> dict[str, float]:
    """:func:`compute_table` as parent-run metrics ``trial_hours/<variant>`` and ``gpu_hours/<variant>`` (where
    the GPUs are known), each with its ``/total``."""
    if table.empty:
        return {}
    metrics = {}
    for row in with_total(table).itertuples(index=False):
        metrics[f"trial_hours/{row.variant}"] = row.hours
        if not math.isnan(row.gpu_hours):
            metrics[f"gpu_hours/{row.variant}"] = row.gpu_hours
    return metrics
