"""Can K trials share kernels? One SaSi network pass (forward + backward) for K models stepped together.

    python benchmarks/stacked_models.py            # GPU: K = 1 2 4 8, graphed bf16
    python benchmarks/stacked_models.py --quick    # CPU check (eager, tiny)

Packed Tune trials are separate processes, time-sliced on the GPU: K trials cost K times one trial's GPU
time (``trial_packing.py``: ~120 consistency steps/s per H200 in all, whatever K). Stacking K models in one
process turns K small kernels into one bigger one. Ways, per K (each model gets its own batch of
``--batch`` crops, 2 × 16 = a consistency step's pass):

- ``separate``: K models, each called in turn (what K packed processes cost at best: no time-slicing loss);
- ``vmap``: the K models' parameters stacked (``torch.func.stack_module_state``) and called through
  ``torch.func.vmap(functional_call)`` (convolutions become grouped convolutions);
- ``one model, K× batch``: the ceiling (one model at batch K × batch; not K trials).

Timed: forward, a cross-entropy loss and backward, bf16 autocast, each way captured as one CUDA graph on a
GPU (so host launch cost is out of it) and replayed; per way: ms per pass of all K models, samples/s and
speed-up over ``separate``. Writes benchmarks/results/stacked_models-<device>.json.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from _common import print_table, write_results
from torch.func import functional_call, stack_module_state, vmap

from sasi.model import build_model


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), target)


def _separate(models, xs, ys):
    def run():
        for m, x, y in zip(models, xs, ys):
            _loss(m(x), y).backward()
    return run


def _vmapped(models, xs, ys):
    params, buffers = stack_module_state(models)
    for p in params.values():
        p.requires_grad_(True)
    base = copy.deepcopy(models[0]).to("meta")
    x, y = torch.stack(xs), torch.stack(ys)

    def one(p, b, xi, yi):
        return _loss(functional_call(base, (p, b), (xi,)), yi)

    batched = vmap(one)

    def run():
        batched(params, buffers, x, y).sum().backward()
    return run


def _one_model(models, xs, ys):
    x, y = torch.cat(xs), torch.cat(ys)

    def run():
        _loss(models[0](x), y).backward()
    return run


WAYS = {"separate": _separate, "vmap": _vmapped, "one model, K× batch": _one_model}


def _timed(run, device: torch.device, amp: bool, steps: int) -> float:
    """Seconds per call of ``run`` (replayed as a CUDA graph on a GPU)."""
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp, cache_enabled=False)
    if device.type == "cuda":
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), autocast:
            for _ in range(3):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), autocast:
            run()
        call = graph.replay
    else:
        def call():
            with autocast:
                run()
        call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--batch", type=int, default=32, help="crops per model per pass (consistency step: 2 × 16)")
    ap.add_argument("--patch", type=int, default=24)
    ap.add_argument("--classes", type=int, default=13)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="CPU check: K = 1 2, batch 2, patch 16, 2 steps")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.quick:
        args.k, args.batch, args.patch, args.steps = [1, 2], 2, 16, 2
    torch.backends.cudnn.benchmark = True
    amp = device.type == "cuda"
    rows = []
    for k in args.k:
        gen = torch.Generator().manual_seed(k)
        models = [build_model("deepfinder", n_classes=args.classes).to(device) for _ in range(k)]
        shape = (args.batch, 1, args.patch, args.patch, args.patch)
        xs = [torch.randn(shape, generator=gen).to(device) for _ in range(k)]
        ys = [torch.randint(args.classes, (args.batch, args.patch, args.patch, args.patch), generator=gen).to(device)
              for _ in range(k)]
        base = None
        for way, build in WAYS.items():
            if way != "separate" and k == 1:
                continue
            seconds = _timed(build(models, xs, ys), device, amp, args.steps)
            base = base or seconds
            rows.append({"k": k, "way": way, "ms_per_pass": 1e3 * seconds,
                         "samples_per_s": k * args.batch / seconds, "speedup_vs_separate": base / seconds})
        del models, xs, ys
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print_table(rows, {"k": "d", "way": "s", "ms_per_pass": ".2f", "samples_per_s": ".0f", "speedup_vs_separate": ".2f"})
    write_results("stacked_models", {"batch_per_model": args.batch, "patch": args.patch, "classes": args.classes,
                                     "steps": args.steps, "amp_bf16": amp, "cuda_graphs": device.type == "cuda",
                                     "quick": args.quick}, rows)


if __name__ == "__main__":
    main()
