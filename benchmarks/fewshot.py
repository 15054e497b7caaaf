"""Few-shot benchmark (recipe shrec-like-v1): train on one tomogram with N labelled points per class, choose the
score cut-off on the validation tomogram, test on the held-out tomograms. Every run is detected with each
detection mode from one segmentation pass, so modes compare on the same checkpoints.

    python benchmarks/fewshot.py --iterations 4500 --methods df-cc3d sasi-star --shots 5 10 --parallel 6   # GPU
    python benchmarks/fewshot.py --quick                              # CPU smoke check (too short to learn)
    python benchmarks/fewshot.py --suite ablations/sasi-star-fixes.yaml --methods sasi-star+restandardise \
        --shots 10 --seeds 0 1 2 3 4 --parallel 8 --set train.cuda_graphs=true   # a suite's variants

Runs are appended to ``<out>.runs.jsonl`` as they finish and skipped when already there (same method, N, seed,
iterations, precision, data seed), so an interrupted benchmark resumes; ``--max-runs K`` does the next K missing
runs only (one wave per time-limited GPU call). Writes ``--out`` (rows and paired differences per
method and N, detection mode ``foreground``), ``--detection-out`` (every mode on the same checkpoints) and an
F1-vs-N PNG. Each run record keeps its last training report (``training``: e.g. ``train_pred_foreground``, which
shows a collapse to background, and the SSL probes). Scores are pooled over the test tomograms' particles;
``*_mean`` are means over tomograms (the paper's T6−9 columns).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot_report import detection_summary, paired, plot, summarise  # noqa: E402

MODES = ("foreground", "cc3d-per-class")
RUN_KEYS = ("method", "precision", "shots", "seed", "iterations", "data_seed")
KEY_DEFAULTS = {"precision": "fast", "data_seed": 0}  # runs recorded before these keys existed
KEPT = ("class_f1_pooled", "localisation_f1_pooled", "distance_f1_pooled", "class_f1_mean", "localisation_f1_mean",
        "class_f1_macro", "picks", "truth", "picks_per_truth", "duplicate_fraction", "wrong_class_fraction",
        "background_fraction", "outside_fraction", "min_score", "class_f1_per_class")


def pin_gpu(counter, gpus: int) -> None:
    """Pool initializer: worker k uses GPU k mod ``gpus`` (before it first imports torch)."""
    with counter.get_lock():
        index, counter.value = counter.value, counter.value + 1
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index % gpus)


def key(run: dict) -> tuple:
    return tuple(run.get(k, KEY_DEFAULTS.get(k)) for k in RUN_KEYS)


def one_run(job: dict) -> dict:
    """:func:`train_and_score`, with a failure (e.g. GPU out of memory) as a record, not the end of the pool."""
    try:
        return train_and_score(job)
    except Exception as e:  # noqa: BLE001 - reported per run; the other runs go on
        return {**{k: job[k] for k in RUN_KEYS}, "error": f"{type(e).__name__}: {e}".splitlines()[0][:300]}


def train_and_score(job: dict) -> dict:
    """Train one (method, N, seed); per detection mode, choose the cut-off on val and score the test split."""
    from dataclasses import replace

    import pyarrow as pa
    import torch

    from sasi.dataset import load_dataset
    from sasi.detect import maps_to_particles, normalise, normalise_on, segment
    from sasi.detect.shape import fit_on_particles, reclassify
    from sasi.fewshot import labelled_particles
    from sasi.presets import preset_config
    from sasi.scoring import choose_min_score, geometry_of, score_picks
    from sasi.train.loop import fit

    torch.set_num_threads(job["threads"])
    train = {"iterations": job["iterations"], "seed": job["seed"], "eval_every": 0, "batch_size": job["batch"]}
    if job["precision"] == "fp32":  # the reference path: no autocast, no TF32, default layout and algorithms
        train |= {"amp": False, "channels_last": False, "cudnn_benchmark": False}
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    overrides = {"data.dataset": job["dataset"], "data.shots": job["shots"], "data.fewshot_seed": job["seed"],
                 "model.channels": job["channels"], **{f"train.{k}": v for k, v in train.items()}}
    config = preset_config(job["preset"], {**job["overrides"], **overrides, **job["set"]})
    started = time.perf_counter()
    result = fit(config, progress=False)
    train_s = time.perf_counter() - started
    ds = load_dataset(job["dataset"])
    net, device = result.model.backbone.eval(), next(result.model.parameters()).device
    geometry = geometry_of(ds, config.data.label_radius_scale)
    started = time.perf_counter()
    maps = {n: segment(net, normalise_on(ds.tomogram(n).data, device), tile=config.detect.tile, device=device,
                       amp=config.train.amp) for n in ds.names("val") + ds.names("test")}
    val, test = ds.names("val"), ds.names("test")
    out = {**{k: job[k] for k in RUN_KEYS}, "preset": job["preset"], "overrides": {**job["overrides"], **job["set"]},
           "train_s": train_s, "modes": {},  # + the last training report (e.g. train_pred_foreground: a collapse)
           "training": {k: v for k, v in result.final.items() if k.startswith(("train_", "ssl_", "iss_"))},
           "voxels": voxel_diagnostics(ds, maps, test, config.detect.threshold)}

    def scored(picks: dict) -> dict:  # cut-off chosen on val, scores on test (and val's own class-aware F1)
        val_picks = pa.concat_tables([picks[n] for n in val])
        cut = choose_min_score(ds, val_picks, val)
        test_picks = pa.concat_tables([picks[n] for n in test])
        scores = score_picks(ds, test_picks, test, "test", cut)
        return {**{k: getattr(scores, k) for k in KEPT}, **centring(ds, picks, test, cut),
                "picks_per_truth_uncut": test_picks.num_rows / max(1, scores.truth),  # before val's cut-off
                "val_class_f1": score_picks(ds, val_picks, val, "val", cut).class_f1_pooled}

    shape = None
    if job.get("shape_modes"):  # the picks' classes from their shape (sasi.detect.shape), fitted on the labelled set
        _, tomogram, chosen = labelled_particles(ds, config.data)
        shape = fit_on_particles(normalise(tomogram.data), chosen, ds.classes, ds.voxel_size)
        volumes = {n: normalise(ds.tomogram(n).data) for n in maps}
    for mode in job["modes"]:
        detect = replace(config.detect, mode=mode)
        picks = {n: maps_to_particles(m, geometry, n, detect).particles for n, m in maps.items()}
        out["modes"][mode] = scored(picks)
        if shape is not None and mode in job["shape_modes"]:
            out["modes"][f"{mode}+shape"] = scored({n: reclassify(p, volumes[n], shape, ds.classes, ds.voxel_size)
                                                    for n, p in picks.items()})
            own, by_shape = out["modes"][mode], out["modes"][f"{mode}+shape"]
            shape_wins = by_shape["val_class_f1"] > own["val_class_f1"]  # detect.class_source auto, as in training
            out["modes"][f"{mode}+auto"] = {**(by_shape if shape_wins else own),
                                            "class_source": "shape" if shape_wins else "network"}
    out["detect_s"] = time.perf_counter() - started
    return out


def voxel_diagnostics(ds, maps: dict, names: list[str], threshold: float) -> dict:
    """What the network marks on whole test tomograms, before detection: the share of voxels whose particle
    probability passes ``threshold`` and that are argmax foreground (against ``particle_share``, the volume inside
    true particles' radii), and at the true particle centres the median particle probability, the share above
    ``threshold`` (also per class) and the share whose most probable class is the true one. Tells a network that
    marks too little (picks lost, and of which classes) from one that floods (components merge)."""
    import numpy as np
    import torch

    from sasi.io.particles import particles_to_voxels

    passed, argmax, inside, centre_prob, centre_class, centre_name = [], [], [], [], [], []
    for name in names:
        m, truth = maps[name], ds.particles(name)
        passed.append(float((m.foreground > threshold).float().mean()))
        argmax.append(float((m.labels > 0).float().mean()))
        radii = np.array([ds.radii[c] / ds.voxel_size for c in truth.column("label").to_pylist()])
        inside.append(float((4 / 3 * np.pi * radii**3).sum() / m.labels.numel()))
        if not truth.num_rows:
            continue
        zyx = np.clip(np.rint(particles_to_voxels(truth, ds.voxel_size)).astype(int), 0, np.array(m.labels.shape) - 1)
        at = tuple(torch.as_tensor(zyx.T, device=m.labels.device))
        centre_prob.append(m.foreground[at].float().cpu().numpy())
        centre_name += truth.column("label").to_pylist()
        true_class = np.array([ds.classes.index(c) + 1 for c in truth.column("label").to_pylist()])
        centre_class.append(m.best_class[at].cpu().numpy() == true_class)
    probs, correct = np.concatenate(centre_prob or [[]]), np.concatenate(centre_class or [[]])
    of_class = {c: probs[[n == c for n in centre_name]] for c in ds.classes if c in centre_name}
    return {"foreground_share": float(np.mean(passed)), "argmax_foreground_share": float(np.mean(argmax)),
            "particle_share": float(np.mean(inside)),
            "centre_foreground_median": float(np.median(probs)) if probs.size else None,
            "centres_above_threshold": float((probs > threshold).mean()) if probs.size else None,
            "centre_class_correct": float(correct.mean()) if correct.size else None,
            "centres_above_threshold_per_class": {c: float((p > threshold).mean()) for c, p in of_class.items()}}


def centring(ds, picks: dict, names: list[str], cut: float) -> dict:
    """How far picks (score ≥ ``cut``) sit from the centre of the nearest true particle, for those within its
    radius: root mean square offset per axis and median distance, voxels (to read against `shape_classes.py`'s
    displaced centres)."""
    import numpy as np
    import pyarrow.compute as pc
    from scipy.spatial import cKDTree

    from sasi.io.particles import particles_to_voxels

    offsets = []
    for name in names:
        truth, found = ds.particles(name), picks[name]
        found = found.filter(pc.greater_equal(found.column("score"), cut)) if found.num_rows else found
        if not truth.num_rows or not found.num_rows:
            continue
        t, p = particles_to_voxels(truth, ds.voxel_size), particles_to_voxels(found, ds.voxel_size)
        distance, nearest = cKDTree(t).query(p)
        radius = np.array([ds.radii[c] / ds.voxel_size for c in truth.column("label").to_pylist()])[nearest]
        offsets.append((p - t[nearest])[distance <= radius])
    if not offsets or not sum(len(o) for o in offsets):
        return {}
    offsets = np.concatenate(offsets)
    return {"centre_offset_rms_vox": float(np.sqrt((offsets**2).mean())),  # per axis, as shape_classes' std
            "centre_distance_median_vox": float(np.median(np.linalg.norm(offsets, axis=1)))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="shrec-like-v1")
    p.add_argument("--data-seed", type=int, default=0,
                   help="simulation seed of the dataset: another seed is fresh data (new tomograms and particles) for "
                        "testing a choice made on seed 0's results")
    p.add_argument("--data", default="/tmp/sasi-bench", help="where generated data lives (outside the repo)")
    p.add_argument("--methods", nargs="+", default=None,
                   help="presets (sasi/presets.py) or, with --suite, its variants (default: df-cc3d sasi-star / all)")
    p.add_argument("--suite", default=None, help="an ablations/*.yaml suite: methods are its variants (preset + "
                   "overrides; its base, shots and seeds are not used: the benchmark sets the schedule)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides for every run that leave its maths alone (e.g. train.cuda_graphs=true)")
    p.add_argument("--shots", nargs="+", type=int, default=[5, 10])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--modes", nargs="+", default=list(MODES))
    p.add_argument("--shape-modes", nargs="*", default=["foreground"],
                   help="also score these modes' picks with classes from shape (MODE+shape) and with the class source "
                        "chosen on val as detect.class_source auto does (MODE+auto); none: leave out")
    p.add_argument("--iterations", type=int, default=4500)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--channels", nargs=3, type=int, default=[32, 48, 64])
    p.add_argument("--precision", choices=["fast", "fp32"], default="fast",
                   help="fast: the defaults (bf16 autocast, TF32, channels_last); fp32: the reference path")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (processes spread over the GPUs)")
    p.add_argument("--max-runs", type=int, default=None,
                   help="do at most this many of the missing runs, in order (a wave that fits one time-limited call)")
    p.add_argument("--quick", action="store_true", help="CPU: tiny recipe, small model, 1 seed")
    p.add_argument("--out", default="benchmarks/results/fewshot-4500.json")
    p.add_argument("--detection-out", default="benchmarks/results/detection.json")
    p.add_argument("--runs", nargs="*", default=[], help="more .runs.jsonl files to merge (earlier sessions)")
    p.add_argument("--report-only", action="store_true", help="summarise the recorded runs, train nothing")
    p.add_argument("--note", default="", help="where and how the recorded runs were made (kept in the JSON)")
    args = p.parse_args()
    if args.quick:
        args.recipe, args.iterations, args.batch, args.channels = "tiny-v1", 150, 4, [8, 12, 16]
        args.seeds, args.shots = [0], [3]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".runs.jsonl")
    runs = {key(r): r for path in [*args.runs, log] if Path(path).exists()
            for r in map(json.loads, Path(path).read_text().splitlines())
            if "error" not in r and r.get("data_seed", 0) == args.data_seed}  # one dataset per report
    meta = {"recipe": args.recipe, "data_seed": args.data_seed, "iterations": args.iterations, "batch": args.batch,
            "channels": args.channels,
            "date": datetime.date.today().isoformat(), **({"note": args.note} if args.note else {})}
    if not args.report_only:
        meta |= run_missing(args, runs, log)
    report(list(runs.values()), out, Path(args.detection_out), meta)


def run_missing(args: argparse.Namespace, runs: dict, log: Path) -> dict:
    """Train and score every (method, N, seed) not yet in ``runs``; append each to ``log`` as it finishes."""
    import torch

    from sasi.simulate import get_recipe, simulate_dataset

    data = Path(args.data) / (args.recipe + (f"-seed{args.data_seed}" if args.data_seed else ""))
    if not (data / "dataset.yaml").exists():
        from _common import dev_templates

        from sasi.simulate.writer import default_workers

        dev_templates()  # exports $SASI_TEMPLATES for recipes built on polnet maps; built-in ones keep theirs
        recipe = get_recipe(args.recipe)
        t0 = time.perf_counter()
        simulate_dataset(data, recipe.simulation, recipe.splits, seed=args.data_seed, recipe=recipe.name,
                         progress=False, workers=default_workers())
        print(f"simulated {args.recipe} in {time.perf_counter() - t0:.1f} s", flush=True)
    threads = max(1, (mp.cpu_count() or 2) // args.parallel)
    methods = method_variants(args.suite, args.methods)
    from sasi.config import parse_assignments

    extra = parse_assignments(args.set)
    jobs = [{"method": m, "preset": preset, "overrides": overrides, "set": extra, "shots": n, "seed": s,
             "data_seed": args.data_seed,
             "dataset": str(data), "iterations": args.iterations, "batch": args.batch, "channels": args.channels,
             "threads": threads, "precision": args.precision, "modes": args.modes, "shape_modes": args.shape_modes}
            for m, (preset, overrides) in methods.items() for n in args.shots for s in args.seeds]  # a method's seeds together
    jobs = [j for j in jobs if key(j) not in runs][:args.max_runs]
    print(f"{len(jobs)} runs to do, {len(runs)} already recorded", flush=True)
    gpus = torch.cuda.device_count()
    started, failed = time.perf_counter(), []
    ctx = mp.get_context("spawn")
    with ctx.Pool(max(1, min(args.parallel, len(jobs))), initializer=pin_gpu,
                  initargs=(ctx.Value("i", 0), gpus)) as pool:
        for r in pool.imap_unordered(one_run, jobs):
            if "error" in r:
                failed.append(r)
                print(f"{r['method']} N={r['shots']} seed={r['seed']} FAILED: {r['error']}", flush=True)
                continue
            runs[key(r)] = r
            with log.open("a") as f:
                f.write(json.dumps(r) + "\n")
            shown = " · ".join(f"{m}: class {s['class_f1_pooled']:.3f} loc {s['localisation_f1_pooled']:.3f} "
                               f"picks/truth {s['picks_per_truth']:.2f}" for m, s in r["modes"].items())
            v = r["voxels"]
            print(f"{r['method']} N={r['shots']} seed={r['seed']} ({r['train_s']:.0f} s): {shown} · voxels > threshold "
                  f"{v['foreground_share']:.4f}, centres above it {v['centres_above_threshold']}", flush=True)
    return {"gpus": gpus, "parallel": args.parallel, "failed": failed, "wall_s": time.perf_counter() - started,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu",
            "torch": torch.__version__}


def method_variants(suite: str | None, names: list[str] | None) -> dict[str, tuple[str, dict]]:
    """Method name → (preset, dotted overrides): presets by name, or a suite's variants."""
    if suite is None:
        return {m: (m, {}) for m in names or ["df-cc3d", "sasi-star"]}
    from sasi.platform.ablate import load_suite

    variants = load_suite(suite).variants
    unknown = sorted(set(names or []) - set(variants))
    if unknown:
        sys.exit(f"{suite}: no variant(s) {unknown}; it has {sorted(variants)}")
    return {m: (variants[m].preset, dict(variants[m].overrides)) for m in names or variants}


def report(runs: list[dict], out: Path, detection_out: Path, meta: dict) -> None:
    rows, pairs = summarise(runs, "foreground"), paired(runs, "foreground")
    # each issue-17 fix (sasi-star+…, and all of them: sasi-star-faithful) against SaSi* at the paper's defaults
    fixes = [r for r in paired(runs, "foreground", "sasi-star") if r["method"].startswith("sasi-star")]
    print(f"\n{'method':>22} {'N':>3} {'n':>2}  class-aware F1     localisation F1   picks/truth  duplicates")
    for r in rows:
        print(f"{r['method']:>22} {r['shots']:>3} {len(r['seeds']):>2}  {r['class_f1']:.3f} ± {r['class_f1_ci95']:.3f}"
              f"    {r['localisation_f1']:.3f} ± {r['localisation_f1_ci95']:.3f}    {r['picks_per_truth']:.2f}"
              f"        {r['duplicate_fraction']:.3f}")
    for r in pairs + fixes:
        print(f"{r['method']} − {r['baseline']} N={r['shots']} {r['metric']}: {r['gain']:+.3f} ± {r['ci95']:.3f} "
              f"({r['pairs']} pairs, better in {r['wins']})")
    out.write_text(json.dumps({"meta": meta, "rows": rows, "paired": pairs, "paired_fixes": fixes,
                               "runs": sorted(runs, key=lambda r: tuple(map(str, key(r))))}, indent=1))
    detection = detection_summary(runs)
    detection_out.write_text(json.dumps({"meta": meta, **detection}, indent=1))
    for mode, m in detection["modes"].items():
        print(f"detect {mode:>15}: class {m['class_f1']:.3f} loc {m['localisation_f1']:.3f} distance "
              f"{m['distance_f1']:.3f} duplicates {m['duplicate_fraction']:.3f} picks/truth {m['picks_per_truth']:.2f}")
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out}, {detection_out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
