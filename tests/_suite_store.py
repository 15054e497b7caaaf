"""A small suite store built the way ``sasi ablate`` logs one, without Ray or training (a few seconds).

Layout of ``<storage>`` (as after ``sasi ablate SUITE --storage <storage>``): ``mlflow.db`` and
``mlartifacts/`` (experiment ``sasi``: one parent run, one child run per trial, through the project's
tracking helpers and real MLflow client calls) and ``<suite>/results.parquet``, ``summary.parquet``,
``summary.md``, ``f1_vs_shots.png``.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ("globe", "ring7", "rod", "tetra")


@dataclass
class SuiteStore:
    storage: Path
    uri: str
    experiment_id: str
    name: str
    parent_id: str
    children: dict[str, str] = field(default_factory=dict)  # run name → run ID


def trial_name(suite: str, variant: str, shots: int, seed: int) -> str:
    return f"{suite}/{variant}/N={shots}/seed={seed}"


def _slice_png(path: Path, seed: int) -> Path:
    """A synthetic slice with true particles (circles) and predicted picks (crosses)."""
    from sasi.io.particles import make_particles
    from sasi.plots import slice_with_particles

    rng = np.random.default_rng(seed)
    volume = rng.normal(size=(8, 64, 64)).astype(np.float32)
    xyz = np.column_stack([rng.uniform(80, 560, 12), rng.uniform(80, 560, 12), np.full(12, 40.0)])
    labels = [CLASSES[i % len(CLASSES)] for i in range(12)]
    truth = make_particles("test_00", labels, xyz)
    picks = make_particles("test_00", labels[:9], xyz[:9] + rng.normal(scale=8, size=(9, 3)) * [1, 1, 0])
    return slice_with_particles(volume, truth, 10.0, path, pred=picks, z=4, title="test_00: o truth, x picks")


def _finish(uri: str, run: str, minutes: float | None) -> None:
    """Close a run, ``minutes`` after its start when given (else now)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    end = None if minutes is None else client.get_run(run).info.start_time + round(minutes * 60_000)
    client.set_terminated(run, "FINISHED", end_time=end)


def build_suite_store(storage: Path, name: str = "browse",
                      variants: tuple[str, ...] = ("sasi", "supervised-only"), shots: int = 3,
                      seed: int = 0, gpus: float = 0, minutes: tuple[float, ...] | None = None) -> SuiteStore:
    """One parent run + one child run per variant, with params, stepped metrics, tags and PNG artifacts;
    each trial held ``gpus`` (tag ``sasi.gpus``) and ran ``minutes[i]`` (default: as long as logging took)."""
    from sasi.platform import summary, tracking
    from sasi.platform.figures import f1_vs_shots, per_class_f1, training_curves

    storage = Path(storage)
    uri = tracking.resolve_tracking_uri(None, storage)
    experiment = tracking.ensure_experiment(uri)
    parent = tracking.parent_run(uri, experiment, name, {"kind": "ablation", "recipe": "tiny-v1"})
    tracking.log_params(uri, parent, {"recipe": "tiny-v1", "data_seed": 0, "quick": False, "shots": [shots],
                                      "seeds": [seed], "variants": sorted(variants)})
    store = SuiteStore(storage, uri, experiment, name, parent)
    rows = []
    for i, variant in enumerate(variants):
        run_name = trial_name(name, variant, shots, seed)
        run = tracking.child_run(uri, experiment, parent, f"trial{i:05d}", run_name,
                                 {"variant": variant, "shots": shots, "seed": seed, "sasi.gpus": gpus})
        store.children[run_name] = run
        tracking.log_params(uri, run, {"name": variant, "data.shots": shots, "train.seed": seed,
                                       "train.iterations": 20, "infill.enabled": variant == "sasi"})
        history = []
        for step in (10, 20):
            metrics = {"iteration": step, "train_loss": 2.0 / step, "train_dice": 1.0 / step,
                       "val_class_f1": 0.3 + 0.01 * step + 0.1 * i, "val_precision": 0.4, "val_recall": 0.5}
            tracking.log_metrics(uri, run, metrics, step=step)
            history.append(metrics)
        per_class = {c: round(0.2 + 0.15 * k + 0.05 * i, 3) for k, c in enumerate(CLASSES)}
        test = {"test_class_f1": 0.45 + 0.1 * i, "test_precision": 0.4 + 0.1 * i, "test_recall": 0.6,
                "test_class_f1_macro": float(np.mean(list(per_class.values()))), "test_picks": 120.0 + i,
                **{f"test_class_f1.{c}": v for c, v in per_class.items()}}
        tracking.log_metrics(uri, run, test, step=20)
        with tempfile.TemporaryDirectory() as tmp:
            files = [training_curves(history, Path(tmp) / "training_curves.png", title=variant),
                     _slice_png(Path(tmp) / "slice.png", i),
                     per_class_f1(per_class, Path(tmp) / "per_class_f1.png", title=run_name,
                                  overall=test["test_class_f1"])]
            (Path(tmp) / "config.yaml").write_text(f"name: {variant}\n")
            tracking.log_artifacts(uri, run, [*files, Path(tmp) / "config.yaml"])
        _finish(uri, run, minutes[i] if minutes else None)
        rows.append({"variant": variant, "shots": shots, "seed": seed, "error": "",
                     **{k: v for k, v in history[-1].items() if k.startswith("val_")}, **test,
                     "iteration": 20.0, "trial_id": f"trial{i:05d}"})
    results = pd.DataFrame(rows).sort_values(["variant", "shots", "seed"]).reset_index(drop=True)
    table = summary.summarise(results)
    files = summary.write(results, table, storage / name)
    files.append(f1_vs_shots(table, storage / name / "f1_vs_shots.png"))
    tracking.log_artifacts(uri, parent, files)
    for row in table.itertuples(index=False):
        tracking.log_metrics(uri, parent, {f"test_class_f1.{row.variant}.{row.shots}shots": row.test_class_f1_mean})
    tracking.finish(uri, parent, "FINISHED")
    return store
