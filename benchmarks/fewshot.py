"""Few-shot benchmark (recipe shrec-like-v1): train on one tomogram with N labelled points per class,
test on the held-out tomograms; SHREC localisation F1 (mean over test tomograms) per method, N and seed.

    python benchmarks/fewshot.py --recipe shrec-like-v1 --iterations 2000 --parallel 4   # GPU(s)
    python benchmarks/fewshot.py --methods df-cc3d --precision fp32 ...                  # the fp32 reference
    python benchmarks/fewshot.py --quick                                                # CPU smoke check, minutes (too short to learn: F1 ≈ 0)

Prints a table and writes JSON (+ an F1-vs-shots PNG) to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats import mean_ci  # noqa: E402


# The paper's few-shot SHREC F1 (arXiv 2505.19948, Table 1, column T6−9: mean over four test tomograms, as here).
PAPER = {"DF cc3d (paper)": {3: 0.189, 5: 0.211, 10: 0.198}, "SaSi* (paper)": {3: 0.273, 5: 0.315, 10: 0.356}}


def pin_gpu(counter, gpus: int) -> None:
    """Pool initializer: worker k uses GPU k mod ``gpus`` (before it first imports torch)."""
    with counter.get_lock():
        index, counter.value = counter.value, counter.value + 1
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index % gpus)


def variant(run: dict) -> str:
    """A run's row name: the preset, marked when trained on the fp32 reference path."""
    return run["method"] + (" (fp32)" if run.get("precision", "fast") == "fp32" else "")


def one_run(job: dict) -> dict:
    """:func:`train_and_score`, with a failure (e.g. GPU out of memory) as a record, not the end of the pool."""
    try:
        return train_and_score(job)
    except Exception as e:  # noqa: BLE001 - reported per run; the other runs go on
        return {**{k: job[k] for k in RUN_KEYS}, "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}


RUN_KEYS = ("method", "precision", "shots", "seed", "iterations")


def train_and_score(job: dict) -> dict:
    """Train one (method, shots, seed) and score it on every test tomogram."""
    import torch

    from sasi.dataset import load_dataset, score_on_dataset
    from sasi.detect import detect
    from sasi.presets import preset_config
    from sasi.train.loop import fit

    torch.set_num_threads(job["threads"])
    train = {"iterations": job["iterations"], "seed": job["seed"], "eval_every": 0, "batch_size": job["batch"]}
    if job["precision"] == "fp32":  # the reference path: no autocast, no TF32, default layout and algorithms
        train |= {"amp": False, "channels_last": False, "cudnn_benchmark": False}
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    config = preset_config(job["method"], {
        "data": {"dataset": job["dataset"], "shots": job["shots"], "fewshot_seed": job["seed"]},
        "train": train, "model": {"channels": job["channels"]},
    })
    started = time.perf_counter()
    result = fit(config, progress=False)
    train_s = time.perf_counter() - started
    ds = load_dataset(job["dataset"])
    device = next(result.model.parameters()).device
    f1s, dist = [], []
    for name in ds.names("test"):
        tomo = ds.tomogram(name)
        found = detect(result.model.backbone, tomo.data, ds.classes, ds.voxel_size, name, device=device,
                       amp=config.train.amp)
        f1s.append(score_on_dataset(ds, found.particles, [name], rule="shrec").micro.f1)
        dist.append(score_on_dataset(ds, found.particles, [name], rule="distance").macro_f1)
    return {**{k: job[k] for k in RUN_KEYS}, "test_f1": float(np.mean(f1s)), "test_f1_per_tomogram": f1s,
            "test_macro_f1_distance": float(np.mean(dist)), "val_f1": result.final.get("val_f1"), "train_s": train_s}


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for method in dict.fromkeys(map(variant, runs)):
        for shots in sorted({r["shots"] for r in runs}):
            sel = [r for r in runs if variant(r) == method and r["shots"] == shots]
            if sel:
                m, h = mean_ci([r["test_f1"] for r in sel])
                md, hd = mean_ci([r["test_macro_f1_distance"] for r in sel])
                rows.append({"method": method, "shots": shots, "n": len(sel), "f1_mean": m, "f1_ci95": h,
                             "macro_f1_distance_mean": md, "macro_f1_distance_ci95": hd})
    return rows


def paired(runs: list[dict], baseline: str = "df-cc3d") -> list[dict]:
    """Each method against ``baseline`` on the same (N, seed), i.e. the same labelled particles: mean F1
    difference ± 95 % CI over the pairs and how many pairs the method wins."""
    base = {(r["shots"], r["seed"]): r["test_f1"] for r in runs if variant(r) == baseline}
    out = []
    for method in dict.fromkeys(map(variant, runs)):
        diffs = [r["test_f1"] - base[r["shots"], r["seed"]] for r in runs
                 if variant(r) == method and method != baseline and (r["shots"], r["seed"]) in base]
        if diffs:
            m, h = mean_ci(diffs)
            out.append({"method": method, "baseline": baseline, "pairs": len(diffs), "f1_diff_mean": m,
                        "f1_diff_ci95": h, "wins": sum(d > 0 for d in diffs)})
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sasi.presets import PRESETS

    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=120)
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        preset = method.split(" ")[0]  # one colour per preset in every plot; the fp32 variant dash-dotted
        ax.errorbar([r["shots"] for r in sel], [r["f1_mean"] for r in sel], yerr=[r["f1_ci95"] for r in sel],
                    marker="o", capsize=3, label=method, ls="-." if preset != method else "-",
                    color=f"C{list(PRESETS).index(preset) % 10}" if preset in PRESETS else None)
    for (name, f1), style in zip(PAPER.items(), ("--", ":")):
        ax.plot(list(f1), list(f1.values()), style, color="grey", label=name)
    ax.set_xlabel("labelled particles per class (N)")
    ax.set_ylabel("localisation F1 (SHREC rule), mean ± 95% CI")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="shrec-like-v1")
    p.add_argument("--data", default="/tmp/sasi-bench", help="where generated data lives (outside the repo)")
    p.add_argument("--methods", nargs="+", default=["sasi", "sasi-star", "df-cc3d"])
    p.add_argument("--shots", nargs="+", type=int, default=[3, 5, 10])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--channels", nargs=3, type=int, default=[32, 48, 64])
    p.add_argument("--precision", choices=["fast", "fp32"], default="fast",
                   help="fast: the defaults (bf16 autocast, TF32, channels_last); fp32: the reference path")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (processes spread over the GPUs)")
    p.add_argument("--quick", action="store_true", help="CPU: tiny recipe, small model, 1 seed")
    p.add_argument("--out", default="benchmarks/results/fewshot.json")
    p.add_argument("--merge", nargs="+", help="only summarise runs from these JSON files (no training)")
    args = p.parse_args()
    if args.quick:
        args.recipe, args.iterations, args.batch, args.channels = "tiny-v1", 150, 4, [8, 12, 16]
        args.seeds, args.shots, args.methods = [0], [3, 5], ["sasi-star", "df-cc3d"]
    if args.merge:
        runs, sources = [], []
        for path in args.merge:
            body = json.loads(Path(path).read_text())
            runs += body["runs"] if isinstance(body, dict) else body  # a list: a run's .partial.json
            sources.append({"file": Path(path).name, **(body.get("meta", {}) if isinstance(body, dict) else {})})
        runs = list({(variant(r), r["shots"], r["seed"]): r for r in runs}.values())  # a re-run replaces
        report(runs, args, Path(args.out), {"merged_from": sources})
        return

    import torch

    from sasi.dataset import load_dataset
    from sasi.simulate import get_recipe, simulate_dataset

    data = Path(args.data) / args.recipe
    if not (data / "dataset.yaml").exists():
        from _common import dev_templates

        recipe = get_recipe(args.recipe, dev_templates())
        t0 = time.perf_counter()
        simulate_dataset(data, recipe.simulation, recipe.splits, seed=0, recipe=recipe.name)
        print(f"simulated {args.recipe} in {time.perf_counter() - t0:.1f} s")
    ds = load_dataset(data)
    threads = max(1, (mp.cpu_count() or 2) // args.parallel)
    jobs = [{"method": m, "shots": n, "seed": s, "dataset": str(data), "iterations": args.iterations,
             "batch": args.batch, "channels": args.channels, "threads": threads, "precision": args.precision}
            for m in args.methods for n in args.shots for s in args.seeds]  # the slow presets start first
    started = time.perf_counter()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs, failed = [], []
    gpus = torch.cuda.device_count()
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.parallel, initializer=pin_gpu, initargs=(ctx.Value("i", 0), gpus)) as pool:
        for r in pool.imap_unordered(one_run, jobs):
            if "error" in r:
                failed.append(r)
                print(f"{variant(r):>10} N={r['shots']:<2} seed={r['seed']} FAILED: {r['error']}", flush=True)
                continue
            runs.append(r)
            print(f"{variant(r):>10} N={r['shots']:<2} seed={r['seed']} test F1 {r['test_f1']:.3f} "
                  f"({r['train_s']:.0f} s)", flush=True)
            out.with_suffix(".partial.json").write_text(json.dumps(runs, indent=1))  # survives a time-out
    meta = {"recipe": args.recipe, "classes": ds.classes, "iterations": args.iterations, "batch": args.batch,
            "channels": args.channels, "precision": args.precision, "parallel": args.parallel, "gpus": gpus,
            "failed": failed,
            "wall_s": time.perf_counter() - started,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
            "torch": torch.__version__, "date": datetime.date.today().isoformat()}
    report(runs, args, out, meta)


def report(runs: list[dict], args: argparse.Namespace, out: Path, meta: dict) -> None:
    rows = summarise(runs)
    print(f"\n{'method':>10} {'N':>3}  F1 (SHREC, mean ± 95% CI)   macro F1 (distance)")
    for r in rows:
        print(f"{r['method']:>10} {r['shots']:>3}  {r['f1_mean']:.3f} ± {r['f1_ci95']:.3f}"
              f"              {r['macro_f1_distance_mean']:.3f} ± {r['macro_f1_distance_ci95']:.3f}")
    pairs = paired(runs)
    for r in pairs:
        print(f"{r['method']} − {r['baseline']}: {r['f1_diff_mean']:+.3f} ± {r['f1_diff_ci95']:.3f} F1 over "
              f"{r['pairs']} paired runs (same N and seed), better in {r['wins']}")
    out.write_text(json.dumps({"meta": meta, "summary": rows, "paired": pairs, "runs": runs}, indent=2))
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
