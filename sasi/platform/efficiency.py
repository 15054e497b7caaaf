"""What a search cost against a full grid over the same knobs (the search issue's measure).

Cost is counted in trial-hours (each trial's wall time; × GPUs per trial for GPU-hours), in the order the trials
were started, stopped and failed trials included: they were paid for. The search has *reached* its result at the
first trial that trained to the end within ``tolerance`` of the best objective it found. The grid trains every
combination of the knobs to the end: every value of a choice, ``levels`` values of a number (low, middle, high),
at the mean cost of the search's completed trials.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

GRID_LEVELS = 3


def grid_points(parameters: Any, levels: int = GRID_LEVELS) -> int:
    """Combinations in a full grid over ``parameters`` (:class:`~sasi.platform.search_space.Parameter`\\ s)."""
    n = 1
    for p in parameters:
        if p.type == "choice":
            n *= len(p.values)
        elif p.type == "int":
            n *= min(levels, int((p.high - p.low) // (p.step or 1)) + 1)
        else:
            n *= levels
    return n


def search_cost(frame: pd.DataFrame, metric: str, mode: str, grid_trials: int, gpus_per_trial: float,
                tolerance: float = 0.01) -> dict[str, Any]:
    """Trial-hours until the search reached its best ``metric`` − ``tolerance`` (``+`` for ``mode`` min), the
    same for the grid of ``grid_trials``, and their ratio; {} when no trial trained to the end with a score.

    ``frame``: one row per trial in start order with ``status``, ``metric`` and ``time_total_s`` (a trial without
    a recorded time counts 0 hours; ``trials_timed`` says how many had one).
    """
    if metric not in frame or "status" not in frame:
        return {}
    scores = pd.to_numeric(frame[metric], errors="coerce")
    done = (frame["status"] == "completed") & scores.notna()
    if not done.any():
        return {}
    sign = 1.0 if mode == "max" else -1.0
    best = float(sign * (sign * scores[done]).max())
    reached = done & (sign * (scores - best) >= -tolerance)
    first = int(reached.to_numpy().argmax())
    seconds = pd.to_numeric(frame.get("time_total_s", pd.Series(index=frame.index, dtype=float)), errors="coerce")
    hours = seconds.fillna(0.0) / 3600
    to_target = float(hours.iloc[: first + 1].sum())
    per_trial = float(hours[done & seconds.notna()].mean()) if (done & seconds.notna()).any() else math.nan
    grid_hours = grid_trials * per_trial
    return {"tolerance": tolerance, "best": best, "trials": int(len(frame)), "trials_timed": int(seconds.notna().sum()),
            "trials_to_target": first + 1, "trial_hours_to_target": to_target, "trial_hours": float(hours.sum()),
            "grid_trials": grid_trials, "grid_trial_hours": grid_hours,
            "search_vs_grid": to_target / grid_hours if grid_hours > 0 else None,
            "gpus_per_trial": gpus_per_trial, "gpu_hours_to_target": to_target * gpus_per_trial,
            "grid_gpu_hours": grid_hours * gpus_per_trial}
