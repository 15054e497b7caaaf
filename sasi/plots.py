"""Pictures users want: slices with particles, training curves, F1-vs-shots. PNG via matplotlib (Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from sasi.io.particles import particles_to_voxels  # noqa: E402


def slice_with_particles(volume: np.ndarray, truth: pa.Table, voxel_size: float, path: str | Path, *,
                         pred: pa.Table | None = None, z: int | None = None, band: float = 3.0,
                         title: str = "") -> Path:
    """Central (or given) z-slice; true particles within ±``band`` voxels as coloured circles, picks as crosses."""
    z = volume.shape[0] // 2 if z is None else z
    fig, ax = plt.subplots(figsize=(7, 7 * volume.shape[1] / volume.shape[2] + 0.3), dpi=110)
    img = volume[z]
    lo, hi = np.percentile(img, [1, 99])
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
    labels = sorted(set(truth.column("label").to_pylist()) | (set(pred.column("label").to_pylist()) if pred else set()))
    colours = {lab: plt.cm.tab10(i % 10) for i, lab in enumerate(labels)}
    zyx = particles_to_voxels(truth, voxel_size)
    for (pz, py, px), lab in zip(zyx, truth.column("label").to_pylist()):
        if abs(pz - z) <= band:
            ax.add_patch(plt.Circle((px, py), 5, fill=False, lw=1.4, color=colours[lab]))
    if pred is not None and pred.num_rows:
        pzyx = particles_to_voxels(pred, voxel_size)
        near = np.abs(pzyx[:, 0] - z) <= band
        ax.scatter(pzyx[near, 2], pzyx[near, 1], marker="x", s=30, lw=1.2,
                   c=[colours[lab] for lab, n in zip(pred.column("label").to_pylist(), near) if n])
    handles = [plt.Line2D([], [], color=colours[lab], marker="o", ls="", mfc="none", label=lab) for lab in labels]
    ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_title(title or f"z = {z}" + ("  (o truth, x picks)" if pred is not None else ""))
    ax.set_axis_off()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
