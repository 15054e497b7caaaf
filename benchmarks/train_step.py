"""Speed of the real SaSi training step (`Trainer.supervised_step` / `Trainer.ssl_step`) at the paper's settings.

    python benchmarks/train_step.py            # GPU: precision / layout / compile / batch sweep
    python benchmarks/train_step.py --quick    # CPU smoke
    python benchmarks/train_step.py --tag graph-step --no-profile \
        --modes bf16+channels_last+cudnn_benchmark+cuda_graphs bf16+channels_last+cudnn_benchmark+cuda_graphs+graph_step
    python benchmarks/train_step.py --preset sasi-star --tag sasi-star   # SSL steps without the consistency term

Supervised step = class-balanced rotated crops + volume infill + consistency branch (f(x) and f(T(x)) in one
pass, so 2×batch crops) + Dice/Focal + Adam; contrastive step = two infill views of unlabelled windows (+ the
consistency view). Data: the train tomogram of recipe shrec-like-fast-v1 (12 classes), N = 5 shots (the fast recipe has only 6 of its rarest class).
FLOPs come from ``torch.utils.flop_counter`` over one step; the fraction of peak uses ``--peak-tflops``
(H100 SXM dense bf16 ≈ 989; fp32/TF32 rows are compared to the same number). The JSON also holds the
projected time of a paper-budget trial (ISS 10 epochs on a 128×256×256 tomogram + 70 k iterations).
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import TINY, print_table, train_only_dataset, write_results
from torch.utils.flop_counter import FlopCounterMode

import sasi.transfer
from sasi.config import deep_update
from sasi.presets import preset_config
from sasi.train.loop import Trainer

EAGER = {"cuda_graphs": False, "graph_step": False}  # the defaults graph both: a mode names what it turns on
MODES = {  # name → (train overrides, TF32 matmul/conv)
    "fp32": ({**EAGER, "amp": False, "channels_last": False, "cudnn_benchmark": False}, False),
    "tf32": ({**EAGER, "amp": False, "channels_last": False, "cudnn_benchmark": False}, True),
    "bf16 (host sync every step)": ({**EAGER, "amp": True, "log_every": 1, "channels_last": False,
                                     "cudnn_benchmark": False}, True),
    "bf16": ({**EAGER, "amp": True, "channels_last": False, "cudnn_benchmark": False}, True),
    "bf16+channels_last": ({**EAGER, "amp": True, "channels_last": True, "cudnn_benchmark": False}, True),
    "bf16+channels_last+cudnn_benchmark": ({**EAGER, "amp": True, "channels_last": True, "cudnn_benchmark": True}, True),
    "bf16+channels_last+cudnn_benchmark, blocking copies": ({**EAGER, "amp": True, "channels_last": True,
                                                             "cudnn_benchmark": True}, True),
    "bf16+channels_last+cudnn_benchmark+cuda_graphs": ({**EAGER, "amp": True, "channels_last": True,
                                                        "cudnn_benchmark": True, "cuda_graphs": True}, True),
    "bf16+channels_last+cudnn_benchmark+cuda_graphs+graph_step": ({"amp": True, "channels_last": True,
                                                                   "cudnn_benchmark": True, "cuda_graphs": True,
                                                                   "graph_step": True}, True),
    "bf16+channels_last+cudnn_benchmark+compile": ({**EAGER, "amp": True, "channels_last": True,
                                                    "cudnn_benchmark": True, "compile": True}, True),
}
PAPER = {"iterations": 70_000, "iss_steps": 10 * 10 * 20 * 20 // 16}  # 10 epochs × windows(128×256×256, W=24, W/2) / 16


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(step, n: int, host_every: int) -> float:
    """Seconds per call of ``step`` (losses copied to the host every ``host_every`` calls, like the loop)."""
    _sync()
    t0 = time.perf_counter()
    for i in range(n):
        metrics = step()
        if (i + 1) % host_every == 0:
            torch.stack(list(metrics.values())).tolist()
    _sync()
    return (time.perf_counter() - t0) / n


def _flops(step, graphed: bool) -> float | None:
    """FLOPs of one step; None for a graphed step (the counter sees only its eager part, not the replayed network)."""
    if graphed:
        step()
        return None
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def profile(dataset: str, mode: str, preset: str, steps: int = 20) -> dict:
    """Where one consistency step's time goes: device busy time vs wall time, and the top kernels."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    train, tf32 = MODES[mode]
    sasi.transfer.NON_BLOCKING = "blocking copies" not in mode
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    config = preset_config(preset, {"data": {"dataset": dataset, "shots": 5}, "train": {"iterations": 10**9, **train}})
    trainer = Trainer(config, progress=False)
    for _ in range(25):
        trainer.supervised_step()
    _sync()
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.supervised_step()
        _sync()
        wall = (time.perf_counter() - t0) / steps
    events = [e for e in prof.key_averages() if e.device_time_total > 0 and e.device_type.name == "CUDA"]
    busy = sum(e.device_time_total for e in events) / steps / 1e6
    top = sorted(events, key=lambda e: e.device_time_total, reverse=True)[:12]
    kernels = [{"kernel": e.key[:90], "ms_per_step": e.device_time_total / steps / 1e3, "calls_per_step": e.count / steps}
               for e in top]
    launches = sum(e.count for e in events) / steps
    print(f"profile ({mode}): wall {wall * 1e3:.1f} ms/step, GPU busy {busy * 1e3:.1f} ms/step, "
          f"{launches:.0f} kernels/step")
    print_table(kernels, {"kernel": "s", "ms_per_step": ".3f", "calls_per_step": ".1f"})
    return {"mode": mode, "wall_ms": wall * 1e3, "gpu_busy_ms": busy * 1e3, "kernels_per_step": launches,
            "top_kernels": kernels}


def graph_equivalence(dataset: str, preset: str, steps: int = 10) -> dict:
    """Same seed, eager vs CUDA graphs of the network passes vs the whole supervised step as one graph: the
    losses of ``steps`` SSL, consistency and plain supervised steps.

    cuDNN autotuning is off and deterministic algorithms on, so every run launches the same kernels; any
    difference is the graphs' doing.
    """
    torch.backends.cudnn.deterministic = True
    losses = {}
    for mode, graphs in {"eager": EAGER, "graphs": {"cuda_graphs": True, "graph_step": False},
                         "graph_step": {"cuda_graphs": True, "graph_step": True}}.items():
        config = preset_config(preset, {"data": {"dataset": dataset, "shots": 5}, "train": {
            "iterations": 2 * steps, "amp": True, "channels_last": True, "cudnn_benchmark": False, **graphs}})
        trainer, out = Trainer(config, progress=False), []
        for _ in range(steps):
            out.append(float(trainer.ssl_step()["ssl_contrastive"]))
        for _ in range(2 * steps):  # the first half with the consistency branch, then plain steps
            out.append(float(trainer.supervised_step()["loss"]))
            trainer.step += 1
        losses[mode] = out
    torch.backends.cudnn.deterministic = False
    result = {"steps": 3 * steps, **losses}
    for mode in ("graphs", "graph_step"):
        diff = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(losses["eager"], losses[mode]))
        print(f"{mode} vs eager, {3 * steps} steps from one seed: max relative loss difference {diff:.2e}")
        result[f"max_relative_difference_{mode}"] = diff
    return result


def measure(dataset: str, mode: str, batch: int, steps: int, quick: bool, peak: float, preset: str) -> dict:
    train, tf32 = MODES[mode]
    sasi.transfer.NON_BLOCKING = "blocking copies" not in mode  # host→device copies without a stream sync
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    overrides = {"data": {"dataset": dataset, "shots": 5}, "pretrain": {"batch_size": batch},
                 "train": {"iterations": 10**9, "batch_size": batch, **train}}
    config = preset_config(preset, deep_update(overrides, TINY) if quick else overrides)
    trainer = Trainer(config, progress=False)
    if torch.cuda.is_available():  # the mode is what runs (a changed default once made every mode whole-step graphs)
        assert (trainer.graphed is not None, trainer.step_graph is not None) == (
            train["cuda_graphs"], train["graph_step"]), f"{mode}: graphs not as the mode says"
    host_every = config.train.log_every
    row = {"mode": mode, "batch": batch}
    for phase, step in (("consistency", trainer.supervised_step), ("ssl", trainer.ssl_step)):
        for _ in range(3 if quick else 25):  # warm-up (and torch.compile's graphs for each batch shape)
            step()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        dt = _timed(step, steps, host_every)
        flops = _flops(step, trainer.graphed is not None or trainer.step_graph is not None)
        row[f"{phase}_it_s"] = 1 / dt
        row[f"{phase}_tflops"] = flops / dt / 1e12 if flops else None
        row[f"{phase}_peak_pct"] = 100 * flops / dt / 1e12 / peak if flops else None
        row[f"{phase}_mem_gb"] = torch.cuda.max_memory_allocated() / 1e9 if torch.cuda.is_available() else None
    trainer.step = 10**9  # past consistency.active_fraction: the plain supervised step (batch crops only)
    for _ in range(3):
        trainer.supervised_step()
    dt = _timed(trainer.supervised_step, steps, host_every)
    row["supervised_it_s"] = 1 / dt
    row["samples_s"] = batch / dt
    # paper budget: ISS, then consistency on the first half of the iterations, plain steps after
    half = PAPER["iterations"] / 2
    row["paper_trial_min"] = (PAPER["iss_steps"] / row["ssl_it_s"] + half / row["consistency_it_s"]
                              + half / row["supervised_it_s"]) / 60
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU smoke: tiny model, few steps")
    p.add_argument("--modes", nargs="*", default=None, help=f"subset of {list(MODES)}")
    p.add_argument("--batches", nargs="*", type=int, default=None, help="batch sweep in the best mode")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--no-profile", action="store_true", help="skip the kernel profile of the best mode")
    p.add_argument("--preset", default="sasi", help="sasi: SSL steps carry the consistency term; sasi-star: not")
    p.add_argument("--tag", default=None, help="results/train_step-<tag>-<device>.json (keeps earlier runs' files)")
    args = p.parse_args()
    quick = args.quick or not torch.cuda.is_available()
    dataset = train_only_dataset("shrec-like-fast-v1")
    steps = args.steps or (3 if quick else 200)
    modes = args.modes or (["fp32", "bf16"] if quick else list(MODES))
    rows = [measure(dataset, m, 16, steps, quick, args.peak_tflops, args.preset) for m in modes]
    best = max(rows, key=lambda r: r["consistency_it_s"])["mode"]
    for b in args.batches if args.batches is not None else ([] if quick else [32, 64]):
        rows.append(measure(dataset, best, b, steps, quick, args.peak_tflops, args.preset))
    print_table(rows, {"mode": "s", "batch": "d", "consistency_it_s": ".1f", "supervised_it_s": ".1f",
                       "ssl_it_s": ".1f", "samples_s": ".0f", "consistency_tflops": ".2f",
                       "consistency_peak_pct": ".2f", "consistency_mem_gb": ".2f", "paper_trial_min": ".1f"})
    prof = profile(dataset, best, args.preset) if torch.cuda.is_available() and not args.no_profile else None
    same = graph_equivalence(dataset, args.preset) if torch.cuda.is_available() else None
    out = write_results(f"train_step-{args.tag}" if args.tag else "train_step", {"recipe": "shrec-like-fast-v1", "preset": args.preset, "shots": 5, "patch": 24,
                                       "steps": steps, "peak_tflops": args.peak_tflops, "quick": quick,
                                       "paper_budget": PAPER}, rows, best_mode=best, profile=prof,
                        graphs_vs_eager=same)
    print(f"best: {best}; wrote {out}")


if __name__ == "__main__":
    main()
