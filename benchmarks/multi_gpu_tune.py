"""Concurrent trials on one multi-GPU node: the same ablation trials one after another, one trial per GPU,
and 2-GPU (DDP) trials, each as a real `run_suite` (Ray Tune + Train + MLflow, evaluation included).

    python benchmarks/multi_gpu_tune.py             # needs >= 2 GPUs; 2·GPUs trials of preset sasi (no ISS)
    python benchmarks/multi_gpu_tune.py --quick     # CPU check: 2 trials, tiny model, CPU "GPUs" = workers

Per layout: wall time of the whole suite, GPU utilisation (``nvidia-smi`` every 0.5 s, averaged over samples
and GPUs), and speed-up over the sequential layout. Data: recipe shrec-like-fast-v1 under ``--data``.
Writes benchmarks/results/multi_gpu_tune-<device>.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TINY, GpuSampler, dev_templates, print_table, write_results

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def layouts(gpus: int) -> dict[str, dict]:
    """Name → suite resources (``Resources`` fields)."""
    g = 1.0 if gpus else 0.0
    out = {"sequential": {"workers": 1, "gpus_per_worker": g, "max_concurrent": 1}}
    if gpus >= 2 or not gpus:
        out["2-GPU trials"] = {"workers": 2, "gpus_per_worker": g, "max_concurrent": max(gpus // 2, 1)}
    out["1 GPU per trial"] = {"workers": 1, "gpus_per_worker": g, "max_concurrent": max(gpus, 2)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=None, help="default: 2 per GPU")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--data", default="/tmp/sasi-bench")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()

    import ray
    import torch

    from sasi.config import deep_update
    from sasi.platform.ablate import Resources, Suite, Variant, ensure_data, run_suite

    gpus = 0 if args.quick else torch.cuda.device_count()
    dev_templates()  # ensure_data simulates the SHREC recipe from $SASI_TEMPLATES
    trials = args.trials or (2 if args.quick else 2 * gpus)
    base = {"pretrain": {"schedule": "none"},
            "train": {"iterations": 20 if args.quick else args.iterations, "eval_every": 0}}
    base = deep_update(TINY, base) if args.quick else base
    ray.init(address="local", num_cpus=max(4, 4 * gpus), num_gpus=gpus, include_dashboard=True, log_to_driver=False)
    rows, root = [], Path(args.data) / "multi-gpu-tune"
    for name, resources in layouts(gpus).items():
        suite = Suite(name="layout", recipe="shrec-like-fast-v1", variants={"sasi": Variant("sasi")},
                      shots=[5], seeds=list(range(trials)), base=base, resources=Resources(**resources))
        data = Path(ensure_data(suite, str(root / "shared")))  # simulated once, linked into every layout's storage
        storage = root / name.replace(" ", "-")
        shutil.rmtree(storage, ignore_errors=True)
        (storage / "data").mkdir(parents=True)
        (storage / "data" / data.name).symlink_to(data)
        started = time.perf_counter()
        with GpuSampler() as gpu:
            results, _ = run_suite(suite, str(storage), resume=False)
        wall = time.perf_counter() - started
        rows.append({"layout": name, **resources, "trials": trials, "wall_s": wall,
                     "failed": int((results["error"] != "").sum()), "gpu_util_mean": gpu.util_mean,
                     "test_f1_mean": float(results["test_f1"].mean())})
        print(f"{name}: {wall:.1f} s", flush=True)
        for r in rows:
            r["speedup"] = rows[0]["wall_s"] / r["wall_s"]
        out = write_results("multi_gpu_tune", {**vars(args), "gpus": gpus, "base": base}, rows)  # after each layout
    ray.shutdown()
    print_table(rows, {"layout": "", "workers": "d", "max_concurrent": "d", "trials": "d", "wall_s": ".1f",
                       "speedup": ".2f", "gpu_util_mean": ".1f", "failed": "d", "test_f1_mean": ".3f"})
    print(f"wrote {out}")

if __name__ == "__main__":
    main()
