"""The report's own figures (F1 per class across variants, compute per variant), as PNG bytes."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sasi.plots import save_figure

def png_of(draw: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    """The PNG that ``draw(*args, path=..., **kwargs)`` writes, as bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(*args, path=path, **kwargs)
        return path.read_bytes()


def per_class_figure(table: pd.DataFrame, path: str | Path) -> Path:
    """Grouped bars: F1 per class, one bar per variant (± CI), one panel per shot count."""
    shots = sorted(table["shots"].unique())
    classes = sorted(table["class"].unique())
    variants = sorted(table["variant"].unique())
    fig, axes = plt.subplots(1, len(shots), figsize=(max(5.0, 0.9 * len(classes) * len(shots) + 2), 3.8),
                             dpi=100, squeeze=False, sharey=True)
    width = 0.8 / max(1, len(variants))
    for ax, n in zip(axes[0], shots):
        for i, variant in enumerate(variants):
            rows = table[(table["shots"] == n) & (table["variant"] == variant)].set_index("class")
            means = [rows["f1_mean"].get(c, np.nan) for c in classes]
            errs = [0.0 if pd.isna(e) else e for e in (rows["f1_ci95"].get(c, np.nan) for c in classes)]
            ax.bar(np.arange(len(classes)) + (i - (len(variants) - 1) / 2) * width, means, width, yerr=errs,
                   capsize=2, label=str(variant))
        ax.set_xticks(range(len(classes)), classes, rotation=30 if len(classes) > 4 else 0,
                      ha="right" if len(classes) > 4 else "center", fontsize=8)
        ax.set(title=f"N = {n} shots", ylim=(0, 1.05))
    axes[0][0].set_ylabel("test F1 (mean ± 95% CI)")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path)


def compute_figure(table: pd.DataFrame, path: str | Path) -> Path:
    """Bars of GPU-hours per variant (trial hours when the GPUs are not known for all)."""
    gpu = table["gpu_hours"].notna().all() and (table["gpu_hours"] > 0).any()
    column, label = ("gpu_hours", "GPU-hours") if gpu else ("hours", "trial hours (wall clock)")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(table) + 2), 3.4), dpi=100)
    ax.bar([str(v) for v in table["variant"]], table[column], color="tab:green")
    ax.set(ylabel=label, title=f"{label} per variant")
    ax.tick_params(axis="x", labelsize=8)
    return save_figure(fig, path)
