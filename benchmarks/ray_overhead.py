"""What Ray costs a 1-GPU training run: the same ``df-cc3d`` run three ways.

    bare   ``fit(config)`` in this process
    train  ``run_training(config, workers=1, gpus_per_worker=1)``: the loop inside a Ray Train V2 ``TorchTrainer``
    tune   a Ray Tune function trial that calls ``run_training`` with workers=1 and forwards its reports
           through ``TuneReportCallback`` (how ``sasi.platform.trial`` ran every trial before ``inline``)
    inline a Ray Tune function trial that trains in its own actor (``run_training(..., inline=True)``, no Train
           worker group: how ``sasi.platform.trial`` runs one-worker trials on local storage now)
    search ``--repeats`` inline trials one after another in one Tuner, as a search runs them (Tune reuses the
           trial's actor: imports and the CUDA context stay); each trial starts when the one before reported last

    python benchmarks/ray_overhead.py            # GPU: shrec-like-fast-v1, 2000 iterations, 2 repeats
    python benchmarks/ray_overhead.py --ways bare inline search --repeats 3   # per-trial cost inside a search
    python benchmarks/ray_overhead.py --quick    # CPU check: tiny model, 40 iterations (~2 min)

The dataset holds only a train tomogram, so the loop never validates: every way times training alone (reports
every ``--eval-every`` iterations, a checkpoint at the end). Per way: wall time from the call to its return
(Ray's own start, ``ray.init``, is reported once, separately), throughput after start-up = slope of the loop's
``elapsed_s`` between its first and last report, fixed start-up cost = wall − iterations / throughput (split
into before the loop's clock starts (for Tune ways also: until the trial function begins, ``to_trial_s``, and
from there to the loop, ``in_trial_before_loop_s``) and after its last report; the Train controller collects reports on its
2 s health-check poll, so the split is ±2 s), and throughput relative to bare. The bare run uses as many torch
threads as a Ray worker gets CPUs (``--cpus-per-worker``; Ray sets ``OMP_NUM_THREADS`` from it). Writes
benchmarks/results/ray_overhead-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TINY, print_table, train_only_dataset, write_results

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "120")

from ray.train import UserCallback


class Recorder(UserCallback):
    """Appends rank 0's metrics of every report to a JSON-lines file (runs in the Train controller)."""

    def __init__(self, path: str):
        self.path = path

    def after_report(self, run_context, metrics, checkpoint) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({**metrics[0], "at": time.time()}, default=float) + "\n")


def tune_trial(params: dict, config, gpus: float, cpus: float, storage: str, log: str, inline: bool) -> None:
    """The Tune function trial: one Train run whose reports reach Tune through ``TuneReportCallback``, or
    (``inline``) the loop in this actor reporting to Tune directly."""
    entered = time.time()  # Ray has scheduled the trial, started (or reused) its actor and unpickled the trainable
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from sasi.platform.train import run_training

    trial = tune.get_context().get_trial_id()

    def record(metrics: dict) -> None:
        tune.report(metrics)
        with open(log, "a") as f:
            f.write(json.dumps({**metrics, "at": time.time(), "trial": trial, "entered": entered}, default=float) + "\n")

    run_training(config, 1, gpus, storage, f"tune-train-{trial}", cpus_per_worker=cpus, inline=inline,
                 on_report=record if inline else None, callbacks=[TuneReportCallback(), Recorder(log)])


def run_way(way: str, config, gpus: float, cpus: float, storage: Path,
            trials: int = 1) -> list[tuple[float, float, list[dict]]]:
    """Per run (``trials`` of them for ``search``): start, end and the loop's reports with their arrival time
    ``at`` (times: ``time.time()``)."""
    log = storage / "reports.jsonl"
    started = time.time()
    if way == "bare":
        from sasi.train.loop import Hooks, fit

        reports = []
        fit(config, Hooks(report=lambda metrics, _: reports.append({**metrics, "at": time.time()})), progress=False)
        return [(started, time.time(), reports)]
    if way == "train":
        from sasi.platform.train import run_training

        run_training(config, 1, gpus, storage, "train", cpus_per_worker=cpus, callbacks=[Recorder(str(log))])
    else:
        from ray import tune

        from sasi.platform.runtime import trial_resources

        trainable = tune.with_parameters(tune_trial, config=config, gpus=gpus, cpus=cpus, storage=str(storage),
                                         log=str(log), inline=way != "tune")
        resources = trial_resources(1, gpus, {"CPU": cpus}, inline=way != "tune").driver
        tuner = tune.Tuner(tune.with_resources(trainable, resources),
                           tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=1, reuse_actors=True),
                           run_config=tune.RunConfig(name="tune", storage_path=str(storage), verbose=0))
        grid = tuner.fit()
        if grid.errors:
            raise grid.errors[0]
    reports = [json.loads(line) for line in log.read_text().splitlines()]
    if way != "search":
        return [(started, time.time(), reports)]
    ended, runs = time.time(), []
    for trial in dict.fromkeys(r["trial"] for r in reports):  # in the order they ran
        own = [r for r in reports if r["trial"] == trial]
        runs.append((runs[-1][2][-1]["at"] if runs else started, own[-1]["at"], own))
    runs[-1] = (runs[-1][0], ended, runs[-1][2])
    return runs


def measure(way: str, repeat: int, start: float, end: float, reports: list[dict], iterations: int) -> dict:
    """Throughput from the loop's clock; the fixed cost split into before the loop and after its last report."""
    first, last = reports[0], reports[-1]
    it_per_s = (last["iteration"] - first["iteration"]) / (last["elapsed_s"] - first["elapsed_s"])
    loop_started = first["at"] - first["elapsed_s"]
    entered = first.get("entered", start)  # Tune ways: when the trial function began (bare: at once)
    return {"way": way, "repeat": repeat, "wall_s": end - start, "it_per_s": it_per_s,
            "startup_s": end - start - iterations / it_per_s, "before_loop_s": loop_started - start,
            "to_trial_s": entered - start, "in_trial_before_loop_s": loop_started - entered,
            "after_last_report_s": end - last["at"], "reports": len(reports)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default="shrec-like-fast-v1")
    p.add_argument("--data", default="/tmp/sasi-bench", help="where generated data lives (outside the repo)")
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=250, help="report interval (>= 2 reports needed)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--ways", nargs="+", default=["bare", "train", "tune", "inline"],
                   choices=["bare", "train", "tune", "inline", "search"])
    p.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs given to ray.init")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--quick", action="store_true", help="CPU: tiny model, few iterations, 1 repeat")
    args = p.parse_args()
    if args.quick:
        args.iterations, args.eval_every, args.batch, args.cpus = 40, 10, 2, 2
        args.repeats = 3 if "search" in args.ways else 1
    if args.iterations < 2 * args.eval_every:
        p.error("need --iterations >= 2 * --eval-every (two reports)")

    import ray
    import torch

    from sasi.config import deep_update
    from sasi.presets import preset_config

    gpus = 1.0 if torch.cuda.is_available() and not args.quick else 0.0
    overrides = deep_update(TINY if args.quick else {}, {
        "data": {"dataset": train_only_dataset(args.recipe, args.data)},
        "train": {"iterations": args.iterations, "eval_every": args.eval_every, "batch_size": args.batch,
                  "device": "cuda" if gpus else "cpu"}})
    config = preset_config("df-cc3d", overrides)
    torch.set_num_threads(max(1, int(args.cpus_per_worker)))
    rows, ray_init_s = [], None
    for repeat in range(args.repeats):
        for way in args.ways:
            if way == "search" and repeat:  # one search of --repeats trials, run with the first repeat
                continue
            if way != "bare" and not ray.is_initialized():
                t0 = time.perf_counter()
                ray.init(address="local", num_cpus=args.cpus, num_gpus=int(gpus), include_dashboard=True,
                         log_to_driver=False)
                ray_init_s = time.perf_counter() - t0
            trials = args.repeats if way == "search" else 1
            with tempfile.TemporaryDirectory(prefix=f"sasi-ray-overhead-{way}-") as tmp:
                runs = run_way(way, config, gpus, args.cpus_per_worker, Path(tmp), trials)
            for k, run in enumerate(runs):
                rows.append(measure(way, repeat + k, *run, args.iterations))
                print(f"{way:>6} #{repeat + k}: {rows[-1]['wall_s']:.1f} s, {rows[-1]['it_per_s']:.2f} it/s", flush=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    bare = [r["it_per_s"] for r in rows if r["way"] == "bare"]
    for r in rows:
        r["vs_bare"] = r["it_per_s"] / (sum(bare) / len(bare)) if bare else None
    print(f"\ndf-cc3d, {args.iterations} iterations, batch {args.batch}, {gpus:g} GPU; "
          f"ray.init {ray_init_s or 0:.1f} s (not in wall)")
    print_table(rows, {"way": "", "repeat": "d", "wall_s": ".1f", "it_per_s": ".2f", "startup_s": ".1f",
                       "before_loop_s": ".1f", "to_trial_s": ".1f", "in_trial_before_loop_s": ".1f",
                       "after_last_report_s": ".1f", "vs_bare": ".3f"})
    settings = {**vars(args), "preset": "df-cc3d", "gpus_per_worker": gpus, "config": overrides}
    print(f"wrote {write_results('ray_overhead', settings, rows, ray_init_s=ray_init_s)}")
    if ray.is_initialized():
        ray.shutdown()


if __name__ == "__main__":
    main()
