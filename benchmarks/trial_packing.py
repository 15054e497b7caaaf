"""How many SaSi trials to pack on one GPU: N training processes at once on one device, N = 1, 2, 4, 8.

    python benchmarks/trial_packing.py               # GPU: N = 1 2 4 8, 30 s timed per N
    python benchmarks/trial_packing.py --n 1 2 4     # choose N
    python benchmarks/trial_packing.py --quick       # CPU check: tiny model, N = 1 2, 4 s timed (~1 min)

This is exactly the sharing Ray Tune gives with fractional GPUs (``gpus_per_trial=1/N``): N separate
processes on one device, time-sliced by the driver (no MPS). Each process builds a :class:`Trainer` for the
paper's SaSi step (preset ``sasi`` without ISS: infill + consistency, recipe shrec-like-fast-v1 (12 classes),
batch 16, patch 24; ``step`` stays 0, so the consistency term of the first half of training is on), runs
warm-up steps, waits at a barrier with the others, then calls ``supervised_step()`` for a fixed time
(``torch.cuda.synchronize()`` at both ends). While they run, ``nvidia-smi`` is sampled every 0.5 s (when
present). Per N: per-trial it/s (mean, min), fraction of the solo (N = 1) speed, aggregate it/s, mean GPU
utilisation, peak device memory used. Writes benchmarks/results/trial_packing-<device>.json.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TINY, GpuSampler, print_table, train_only_dataset, write_results


def trial(job: dict, barrier, results) -> None:
    """One packed trial: build, warm up, wait for the others, then time ``supervised_step()``."""
    import torch

    from sasi.presets import preset_config
    from sasi.train.loop import Trainer

    torch.set_num_threads(job["threads"])
    trainer = Trainer(preset_config("sasi", job["overrides"]), progress=False)
    cuda = trainer.device.type == "cuda"
    for _ in range(job["warmup"]):
        trainer.supervised_step()
    if cuda:
        torch.cuda.synchronize()
    barrier.wait()
    started, steps = time.perf_counter(), 0
    while time.perf_counter() - started < job["seconds"]:
        trainer.supervised_step()
        steps += 1
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    results.put({"it_per_s": steps / seconds, "steps": steps, "seconds": seconds,
                 "peak_alloc_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None})


def pack(n: int, job: dict, timeout: float) -> dict:
    """Run ``n`` trials together; their it/s and what nvidia-smi saw meanwhile."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n + 1), ctx.Queue()
    procs = [ctx.Process(target=trial, args=(job, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    barrier.wait(timeout)  # all built and warmed up
    with GpuSampler(os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0") as gpu:
        trials = [results.get(timeout=job["seconds"] + timeout) for _ in range(n)]
    for p in procs:
        p.join()
    speeds = [t["it_per_s"] for t in trials]
    return {"n": n, "trial_it_per_s": sum(speeds) / n, "min_trial_it_per_s": min(speeds),
            "aggregate_it_per_s": sum(speeds),
            "gpu_util_mean": gpu.util_mean, "mem_used_max_mib": gpu.mem_max_mib,
            "peak_alloc_gib_per_trial": trials[0]["peak_alloc_gib"], "trials": trials}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", nargs="+", type=int, default=[1, 2, 4, 8], help="trials at once")
    p.add_argument("--recipe", default="shrec-like-fast-v1")
    p.add_argument("--data", default="/tmp/sasi-bench", help="where generated data lives (outside the repo)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=24)
    p.add_argument("--warmup", type=int, default=20, help="untimed steps per trial")
    p.add_argument("--seconds", type=float, default=30.0, help="timed duration per N")
    p.add_argument("--threads", type=int, default=None, help="torch threads per trial (default: cores / max N)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for trials to start")
    p.add_argument("--quick", action="store_true", help="CPU: tiny model, N = 1 2, a few seconds each")
    p.add_argument("--graphs", action="store_true",
                   help="CUDA graphs as the defaults have them, train.cuda_graphs and train.graph_step (else both "
                        "off); results: trial_packing-graphs-*")
    args = p.parse_args()
    if args.quick:
        args.n, args.batch, args.patch, args.warmup, args.seconds, args.threads = [1, 2], 2, 16, 2, 4.0, 1
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // max(args.n))
    from sasi.config import deep_update

    overrides = deep_update(TINY if args.quick else {}, {
        "data": {"dataset": train_only_dataset(args.recipe, args.data), "patch": args.patch},
        "pretrain": {"schedule": "none"},
        "train": {"batch_size": args.batch, "device": "cpu" if args.quick else "auto",
                  "cuda_graphs": args.graphs, "graph_step": args.graphs}})
    job = {"overrides": overrides, "warmup": args.warmup, "seconds": args.seconds, "threads": args.threads}
    rows = []
    for n in args.n:
        rows.append(pack(n, job, args.timeout))
        print(f"N={n}: {rows[-1]['trial_it_per_s']:.2f} it/s per trial", flush=True)
    solo = next((r["trial_it_per_s"] for r in rows if r["n"] == 1), None)
    for r in rows:
        r["vs_solo"] = r["trial_it_per_s"] / solo if solo else None
    print(f"\npreset sasi (no ISS), {args.recipe}, batch {args.batch}, patch {args.patch}, {args.seconds:g} s timed")
    print_table(rows, {"n": "d", "trial_it_per_s": ".2f", "min_trial_it_per_s": ".2f", "vs_solo": ".3f",
                       "aggregate_it_per_s": ".2f", "gpu_util_mean": ".0f", "mem_used_max_mib": ".0f",
                       "peak_alloc_gib_per_trial": ".2f"})
    print(f"wrote {write_results('trial_packing-graphs' if args.graphs else 'trial_packing', {**vars(args), 'preset': 'sasi', 'config': overrides}, rows)}")


if __name__ == "__main__":
    main()
