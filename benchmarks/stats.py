"""Mean and 95 % confidence interval (Student t) of a few runs."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the ``level`` CI (0 half-width for a single value)."""
    arr = np.asarray(values, dtype=float)
    if len(arr) < 2:
        return float(arr.mean()) if len(arr) else float("nan"), 0.0
    half = stats.t.ppf(0.5 + level / 2, len(arr) - 1) * arr.std(ddof=1) / np.sqrt(len(arr))
    return float(arr.mean()), float(half)
