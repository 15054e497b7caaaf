"""PNG figures for tracking: training curves of a run, F1 against shots for a suite, parameters of a search."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from sasi.plots import save_figure


def training_curves(history: Sequence[Mapping[str, float]], path: str | Path, title: str = "") -> Path:
    """Training losses (left) and validation scores (right) against the iteration."""
    frame = pd.DataFrame(list(history))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    if not frame.empty and "iteration" in frame:
        for column in sorted(c for c in frame if c.startswith("train_")):
            left.plot(frame["iteration"], frame[column], marker="o", ms=3, label=column[len("train_"):])
        for column in ("val_class_f1", "val_localisation_f1", "val_duplicate_fraction"):
            if column in frame:
                right.plot(frame["iteration"], frame[column], marker="o", ms=3, label=column)
    left.set(xlabel="iteration", ylabel="loss", title="training")
    if left.lines and (frame.filter(like="train_") > 0).all().all():
        left.set_yscale("log")
    right.set(xlabel="iteration", ylabel="score", ylim=(0, 1.02), title="validation")
    for ax in (left, right):
        if ax.lines:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def f1_vs_shots(summary: pd.DataFrame, path: str | Path, metric: str = "test_class_f1") -> Path:
    """Mean ± 95% CI of ``metric`` per variant against the number of shots (from :func:`summarise`)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for variant, rows in summary.groupby("variant", sort=True):
        rows = rows.sort_values("shots")
        ax.errorbar(rows["shots"], rows[f"{metric}_mean"], yerr=rows[f"{metric}_ci95"].fillna(0),
                    marker="o", capsize=3, label=str(variant))
    ax.set(xlabel="shots per class", ylabel=f"{metric} (mean ± 95% CI)", ylim=(0, 1.02))
    ax.set_xticks(sorted(summary["shots"].unique()))
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def per_class_f1(scores: Mapping[str, float], path: str | Path, title: str = "", *,
                 errors: Mapping[str, float] | None = None, overall: float | None = None) -> Path:
    """Bars of F1 per class (``{"ribosome": 0.8, ...}``), optional ± ``errors``, ``overall`` F1 as a dashed line."""
    classes = sorted(scores)
    values = [float(scores[c]) for c in classes]
    yerr = [float(errors.get(c, 0.0) or 0.0) for c in classes] if errors else [0.0] * len(classes)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(classes) + 2), 3.6), dpi=100)
    bars = ax.bar(range(len(classes)), values, yerr=yerr if errors else None, capsize=3, color="tab:blue")
    for bar, value, err in zip(bars, values, yerr):
        ax.annotate(f"{value:.2f}", (bar.get_x() + bar.get_width() / 2, value + err), ha="center",
                    va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    if overall is not None:
        ax.axhline(overall, ls="--", color="tab:red", lw=1, label=f"overall {overall:.2f}")
        ax.legend(fontsize=7, loc="upper right")
    tilt = len(classes) > 4
    ax.set_xticks(range(len(classes)), classes, rotation=30 if tilt else 0, ha="right" if tilt else "center",
                  fontsize=8)
    ax.set(ylabel="F1", ylim=(0, 1.1), title=title or "F1 per class")
    return save_figure(fig, path)


def param_importances(importances: Mapping[str, float], path: str | Path, metric: str = "objective") -> Path:
    """Horizontal bars of each parameter's share of the ``metric`` variance (most important on top)."""
    names = sorted(importances, key=importances.get)
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.4 * len(names)), dpi=100)
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set(xlabel=f"share of importance for {metric}", xlim=(0, 1.05), title="parameter importances")
    ax.tick_params(axis="y", labelsize=8)
    return save_figure(fig, path)


def parallel_coordinates(study, params: Sequence[str], path: str | Path, metric: str = "objective") -> Path:
    """One line per complete trial of an Optuna ``study`` across its ``params``, coloured by ``metric``."""
    import optuna
    from optuna.visualization.matplotlib import plot_parallel_coordinate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot_parallel_coordinate(study, params=list(params), target_name=metric)
    ax.figure.set_size_inches(2.2 * len(params) + 3.5, 4.2)
    return save_figure(ax.figure, path)
