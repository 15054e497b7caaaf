"""Ray Train DDP scaling of the SaSi training step on 1, 2, 4, 8 GPUs of one node (weak scaling).

    python benchmarks/ddp_scaling.py                      # every GPU count up to the node's GPUs
    python benchmarks/ddp_scaling.py --target-f1 0.3      # also time to a validation F1 (recipe with a val split)
    python benchmarks/ddp_scaling.py --quick              # CPU check: gloo, 1 and 2 workers, tiny model

Each worker runs the preset ``sasi`` step without pre-training (crops + infill + consistency, batch 16 per
worker, so the global batch is 16·N) through ``run_training`` (``TorchTrainer``, DDP). Throughput is the
slope of the loop's own clock between its first and last report (start-up excluded; the recorder of
``ray_overhead.py`` collects rank 0's reports); samples/s = N · batch · it/s; efficiency = samples/s(N) /
(N · samples/s(1)). With ``--target-f1`` the run validates every ``--eval-every`` iterations and the time to
the first report at or above the target is recorded (``null`` if never reached). Writes
benchmarks/results/ddp_scaling-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import TINY, print_table, recipe_dataset, train_only_dataset, write_results
from ray_overhead import Recorder


def run(config, workers: int, gpus: float) -> tuple[float, list[dict]]:
    """(wall seconds, rank 0's reports) of one Train run with ``workers`` workers."""
    from sasi.platform.train import run_training

    with tempfile.TemporaryDirectory(prefix="sasi-ddp-") as tmp:
        log = Path(tmp) / "reports.jsonl"
        started = time.time()
        run_training(config, workers, gpus, tmp, f"ddp{workers}", callbacks=[Recorder(str(log))])
        return time.time() - started, [json.loads(line) for line in log.read_text().splitlines()]


def row(workers: int, batch: int, wall: float, reports: list[dict], target: float | None) -> dict:
    first, last = reports[0], reports[-1]
    it_s = (last["iteration"] - first["iteration"]) / (last["elapsed_s"] - first["elapsed_s"])
    reached = [r["elapsed_s"] for r in reports if target is not None and r.get("val_f1", -1) >= target]
    return {"workers": workers, "wall_s": wall, "it_per_s": it_s, "samples_per_s": workers * batch * it_s,
            "final_val_f1": last.get("val_f1"), "time_to_target_s": reached[0] if reached else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", nargs="*", type=int, default=None, help="default: 1, 2, 4, 8 up to the GPUs")
    p.add_argument("--recipe", default="shrec-like-fast-v1")
    p.add_argument("--iterations", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--batch", type=int, default=16, help="per worker")
    p.add_argument("--target-f1", type=float, default=None)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()

    import ray
    import torch

    from sasi.config import deep_update
    from sasi.presets import preset_config

    gpus = torch.cuda.device_count() if not args.quick else 0
    if args.quick:
        args.iterations, args.eval_every, args.batch = 20, 10, 2
    counts = args.workers or [n for n in (1, 2, 4, 8) if n <= max(gpus, 2 if args.quick else 1)]
    dataset = recipe_dataset(args.recipe) if args.target_f1 is not None else train_only_dataset(args.recipe)
    overrides = deep_update(TINY if args.quick else {}, {
        "data": {"dataset": dataset}, "pretrain": {"schedule": "none"},
        "train": {"iterations": args.iterations, "eval_every": args.eval_every, "batch_size": args.batch}})
    config = preset_config("sasi", overrides)
    ray.init(address="local", num_cpus=max(2, 2 * max(counts)), num_gpus=gpus, include_dashboard=True,
             log_to_driver=False)
    rows = []
    for n in counts:  # results are written after every count, so a time-out keeps what finished
        rows.append(row(n, args.batch, *run(config, n, 1.0 if gpus else 0.0), args.target_f1))
        print(f"{n} workers: {rows[-1]['samples_per_s']:.0f} samples/s", flush=True)
        one = next((r for r in rows if r["workers"] == 1), None)
        for r in rows:
            r["efficiency"] = r["samples_per_s"] / (r["workers"] * one["samples_per_s"]) if one else None
        out = write_results("ddp_scaling", {**vars(args), "gpus": gpus, "preset": "sasi"}, rows)
    ray.shutdown()
    print_table(rows, {"workers": "d", "wall_s": ".1f", "it_per_s": ".2f", "samples_per_s": ".0f",
                       "efficiency": ".3f", "final_val_f1": ".3f", "time_to_target_s": ".1f"})
    print(f"wrote {out}")

if __name__ == "__main__":
    main()
