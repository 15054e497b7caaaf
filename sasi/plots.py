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
                         pred: pa.Table | None = None, instances: np.ndarray | None = None, z: int | None = None,
                         band: float = 3.0, title: str = "") -> Path:
    """Central (or given) z-slice with the true particles and, if given, picks (crosses).

    With ``instances`` (the occupancy map: particle ``i`` of ``truth`` is id ``i + 1``) every particle cut by
    the slice is outlined by its true shape; otherwise particles centred within ±``band`` voxels get a circle.
    """
    z = volume.shape[0] // 2 if z is None else z
    fig, ax = plt.subplots(figsize=(7, 7 * volume.shape[1] / volume.shape[2] + 0.3), dpi=110)
    img = volume[z]
    lo, hi = np.percentile(img, [1, 99])
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
    truth_labels = truth.column("label").to_pylist()
    zyx = particles_to_voxels(truth, voxel_size)
    shown = particles_in_slice(zyx, z, instances, band)
    pred_labels = pred.column("label").to_pylist() if pred is not None else []
    pzyx = particles_to_voxels(pred, voxel_size) if pred is not None and pred.num_rows else np.zeros((0, 3))
    near = np.abs(pzyx[:, 0] - z) <= band
    labels = sorted({truth_labels[i] for i in shown} | {lab for lab, n in zip(pred_labels, near) if n})
    palette = plt.cm.tab20 if len(labels) > 10 else plt.cm.tab10
    colours = {lab: palette(i % palette.N) for i, lab in enumerate(labels)}
    for i in shown:
        colour = colours[truth_labels[i]]
        if instances is not None:
            ax.contour(instances[z] == i + 1, levels=[0.5], colors=[colour], linewidths=1.4)
        else:
            ax.add_patch(plt.Circle((zyx[i, 2], zyx[i, 1]), 5, fill=False, lw=1.4, color=colour))
    if near.any():
        ax.scatter(pzyx[near, 2], pzyx[near, 1], marker="x", s=30, lw=1.2,
                   c=[colours[lab] for lab, n in zip(pred_labels, near) if n])
    handles = [plt.Line2D([], [], color=colours[lab], marker="o", ls="", mfc="none", label=lab) for lab in labels]
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_title(title or f"z = {z}" + ("  (o truth, x picks)" if pred is not None else ""))
    ax.set_axis_off()
    return save_figure(fig, path)


def particles_in_slice(zyx: np.ndarray, z: int, instances: np.ndarray | None = None, band: float = 3.0) -> list[int]:
    """Rows of ``zyx`` (particle centres, voxels) to draw on slice ``z``: those whose occupancy (id = row + 1)
    the slice cuts, or without ``instances`` those centred within ±``band`` voxels."""
    if instances is not None:
        return [int(i) - 1 for i in np.unique(instances[z]) if 0 < i <= len(zyx)]
    return [i for i, pz in enumerate(zyx[:, 0]) if abs(pz - z) <= band]


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
