"""Summaries of few-shot runs (benchmarks/fewshot.py): rows per method and N, paired differences against the
baseline on the same labelled particles, detection modes on the same checkpoints, the F1-vs-N plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from stats import mean_ci

METRICS = {"class_f1": "class_f1_pooled", "localisation_f1": "localisation_f1_pooled"}
# The paper's few-shot SHREC localisation F1 (arXiv 2505.19948, Table 1, column T6−9: mean over four test
# tomograms, our `localisation_f1_mean`).
PAPER = {"DF cc3d (paper)": {3: 0.189, 5: 0.211, 10: 0.198}, "SaSi* (paper)": {3: 0.273, 5: 0.315, 10: 0.356}}


def _groups(runs: list[dict]) -> dict[tuple[str, int], list[dict]]:
    out: dict[tuple[str, int], list[dict]] = {}
    for r in sorted(runs, key=lambda r: (r["shots"], r.get("data_seed", 0), r["seed"])):
        out.setdefault((r["method"], r["shots"]), []).append(r)
    return out


def _pair_key(run: dict) -> tuple[int, int, int]:
    """What a run shares with its baseline: the simulated data, the labelled particles (N, seed)."""
    return run.get("data_seed", 0), run["shots"], run["seed"]


def summarise(runs: list[dict], mode: str) -> list[dict]:
    """Per (method, N): mean ± 95 % CI over seeds of class-aware and localisation F1, plus pick statistics."""
    rows = []
    for (method, shots), sel in _groups(runs).items():
        scores = [r["modes"][mode] for r in sel if mode in r["modes"]]
        if not scores:
            continue
        row = {"method": method, "shots": shots, "mode": mode, "seeds": [r["seed"] for r in sel]}
        for name, field in {**METRICS, "distance_f1": "distance_f1_pooled",
                            "localisation_f1_mean": "localisation_f1_mean", "class_f1_mean": "class_f1_mean"}.items():
            row[name], row[f"{name}_ci95"] = mean_ci([s[field] for s in scores])
        for name in ("picks_per_truth", "duplicate_fraction", "wrong_class_fraction", "background_fraction"):
            row[name] = float(np.mean([s[name] for s in scores]))
        voxels = [r["voxels"] for r in sel if r.get("voxels")]  # runs since 2026-12-03 (session 15)
        if voxels:
            row["voxels"] = {k: float(np.mean([v[k] for v in voxels if v[k] is not None])) for k in voxels[0]
                             if not isinstance(voxels[0][k], dict) and any(v[k] is not None for v in voxels)}
            row["voxels"] |= {"runs": len(voxels), "centres_above_threshold_per_class": {
                c: float(np.mean([v["centres_above_threshold_per_class"][c] for v in voxels]))
                for c in voxels[0].get("centres_above_threshold_per_class", {})}}
        rows.append(row)
    return rows


def paired(runs: list[dict], mode: str, baseline: str = "df-cc3d") -> list[dict]:
    """Each method against ``baseline`` on the same (dataset, N, seed), i.e. the same labelled particles."""
    base = {_pair_key(r): r["modes"][mode] for r in runs if r["method"] == baseline and mode in r["modes"]}
    out = []
    for (method, shots), sel in _groups(runs).items():
        if method == baseline:
            continue
        for metric, field in METRICS.items():
            diffs = [r["modes"][mode][field] - base[_pair_key(r)][field] for r in sel
                     if mode in r["modes"] and _pair_key(r) in base]
            if diffs:
                gain, ci = mean_ci(diffs)
                out.append({"method": method, "baseline": baseline, "shots": shots, "metric": metric, "mode": mode,
                            "pairs": len(diffs), "gain": gain, "ci95": ci, "wins": int(sum(d > 0 for d in diffs))})
    return out


def detection_summary(runs: list[dict], reference: str = "cc3d-per-class") -> dict:
    """Every detection mode on the same checkpoints: means over runs, and each mode minus ``reference`` paired."""
    modes = sorted({m for r in runs for m in r["modes"]})
    fields = {"localisation_f1": "localisation_f1_pooled", "class_f1": "class_f1_pooled",
              "distance_f1": "distance_f1_pooled", "duplicate_fraction": "duplicate_fraction",
              "picks_per_truth": "picks_per_truth", "wrong_class_fraction": "wrong_class_fraction",
              "background_fraction": "background_fraction", "centre_offset_rms_vox": "centre_offset_rms_vox"}
    summary = {m: {name: float(np.mean(values)) for name, f in fields.items()  # fields newer runs added: where recorded
                   if (values := [r["modes"][m][f] for r in runs if f in r["modes"].get(m, {})])}
               | {"runs": sum(m in r["modes"] for r in runs)} for m in modes}
    for mode in modes:
        summary[mode]["per_method"] = {f"{row['method']} N={row['shots']}": row for row in summarise(runs, mode)}
    gains = []
    for mode in (m for m in modes if m != reference):
        base = mode.split("+")[0]  # classes from shape or auto: against the same picks' own classes too
        for ref in [reference] + ([base] if base != mode else []):
            for metric in ("localisation_f1", "class_f1", "distance_f1"):
                diffs = [r["modes"][mode][fields[metric]] - r["modes"][ref][fields[metric]] for r in runs
                         if mode in r["modes"] and ref in r["modes"]]
                if diffs:
                    gain, ci = mean_ci(diffs)
                    gains.append({"mode": mode, "reference": ref, "metric": metric, "runs": len(diffs),
                                  "gain": gain, "ci95": ci})
    return {"modes": summary, "paired": gains}


def plot(rows: list[dict], path: Path) -> None:
    """Class-aware (solid) and localisation (dashed) F1 against N per method, with the paper's rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=120)
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        sel = [r for r in rows if r["method"] == method]
        for metric, style in (("class_f1", "-"), ("localisation_f1", "--")):
            ax.errorbar([r["shots"] for r in sel], [r[metric] for r in sel], yerr=[r[f"{metric}_ci95"] for r in sel],
                        marker="o", capsize=3, ls=style, color=f"C{i}",
                        label=f"{method} ({'class-aware' if metric == 'class_f1' else 'localisation'})")
    for (name, f1), style in zip(PAPER.items(), (":", "-.")):
        ax.plot(list(f1), list(f1.values()), style, color="grey", label=f"{name}, localisation")
    ax.set_xlabel("labelled particles per class (N)")
    ax.set_ylabel("F1 on the test tomograms (mean ± 95% CI)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
