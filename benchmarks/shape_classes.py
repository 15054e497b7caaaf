"""How well does a particle's shape alone tell its class from N labelled particles? (CPU, no network.)

    python benchmarks/shape_classes.py                   # shrec-like-v1 (simulated once under /tmp/sasi-bench)
    python benchmarks/shape_classes.py --data PATH --shots 5 10 --seeds 0 1 2 3 4

The few-shot networks find particles well but mostly give them the wrong class (results/README.md: class-aware F1
≈ 0.27–0.32 × localisation F1). This measures a second opinion on the class: for each seed, the N labelled
particles per class of ``train_00`` (the same draw as training, ``sample_fewshot``) fit a
:class:`sasi.detect.shape.ShapeClassifier` on rotation-invariant shape descriptors, which then classifies every
true particle of the validation and test tomograms at its true centre and at centres displaced by Gaussian noise of the given
std per axis (voxels), as a detector's picks would be. Prints accuracy (chance: 1 / classes) per N and
displacement, mean ± std over seeds, and writes ``results/shape_classes-<device>.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import print_table, recipe_dataset, write_results

from sasi.dataset import load_dataset
from sasi.detect.shape import ShapeClassifier, shape_descriptors
from sasi.fewshot import sample_fewshot
from sasi.io.particles import particles_to_voxels


def standardised(volume: np.ndarray) -> np.ndarray:
    volume = volume.astype(np.float32)
    return (volume - volume.mean()) / volume.std()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="dataset folder (default: shrec-like-v1 simulated once)")
    p.add_argument("--shots", nargs="*", type=int, default=[5, 10])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--jitter", nargs="*", type=float, default=[0.0, 1.0, 2.0], help="centre noise std, voxels per axis")
    args = p.parse_args()
    ds = load_dataset(args.data or recipe_dataset("shrec-like-v1"))
    index = {c: i for i, c in enumerate(ds.classes)}
    train = ds.splits["train"][0]
    train_volume, train_truth = standardised(ds.tomogram(train).data), ds.particles(train)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    described, truth_classes = {}, {}  # per split: descriptors per displacement, true classes
    for split in ("val", "test"):
        tomograms = []  # (volume, true centres) per tomogram
        for name in ds.names(split):
            truth = ds.particles(name)
            tomograms.append((standardised(ds.tomogram(name).data), particles_to_voxels(truth, ds.voxel_size)))
            truth_classes.setdefault(split, []).extend(index[c] for c in truth.column("label").to_pylist())
        truth_classes[split] = np.array(truth_classes[split])
        for jitter in args.jitter:  # the same displaced centres for every N and seed
            described[split, jitter] = np.concatenate([
                shape_descriptors(v, np.clip(zyx + rng.normal(0, jitter, zyx.shape), 0, np.array(v.shape) - 1))
                for v, zyx in tomograms])
    rows = []
    for shots in args.shots:
        accuracy = {key: [] for key in described}
        per_class = {key: [] for key in described}
        for seed in args.seeds:
            chosen = sample_fewshot(train_truth, shots, ds.classes, seed)
            labelled = np.array([index[c] for c in chosen.column("label").to_pylist()])
            model = ShapeClassifier.fit(shape_descriptors(train_volume, particles_to_voxels(chosen, ds.voxel_size)),
                                        labelled, len(ds.classes))
            for (split, jitter), x in described.items():
                right = model.predict(x) == truth_classes[split]
                accuracy[split, jitter].append(float(right.mean()))
                per_class[split, jitter].append([float(right[truth_classes[split] == c].mean())
                                                 for c in range(len(ds.classes))])
        for split, jitter in described:
            values = accuracy[split, jitter]
            rows.append({"split": split, "shots": shots, "jitter_vox": jitter, "seeds": len(args.seeds),
                         "particles": len(truth_classes[split]), "accuracy": float(np.mean(values)),
                         "accuracy_std": float(np.std(values)), "chance": 1 / len(ds.classes), "per_seed": values,
                         "per_class": dict(zip(ds.classes, np.mean(per_class[split, jitter], axis=0).round(3).tolist()))})
    print_table(rows, {"split": "s", "shots": "d", "jitter_vox": ".1f", "seeds": "d", "particles": "d",
                       "accuracy": ".3f", "accuracy_std": ".3f", "chance": ".3f"})
    out = write_results("shape_classes", {"dataset": ds.meta.get("recipe"), "classes": ds.classes,
                                          "seconds": round(time.perf_counter() - t0, 1)}, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
