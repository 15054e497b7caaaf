"""Speed of the SaSi training step and of full-tomogram inference (GPU issue; runs on CPU with --small).

    python benchmarks/speed.py                 # GPU: fp32 / TF32 / bf16, channels_last_3d, torch.compile
    python benchmarks/speed.py --small         # CPU smoke: tiny sizes

Prints a table and writes JSON to benchmarks/results/speed-<device>.json. FLOPs come from
``torch.utils.flop_counter``; the fraction of peak uses ``--peak-tflops`` (H100 dense bf16 ≈ 989).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from sasi.detect import components_to_particles, normalise, segment
from sasi.method.losses import SegmentationLoss
from sasi.train.network import SasiNet


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step_speed(device: torch.device, batch: int, patch: int, classes: int, mode: str, steps: int) -> dict:
    """Iterations/s of one supervised + consistency step (batch of 2×``batch`` crops) in ``mode``."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode != "fp32"
    net = SasiNet.build("deepfinder", classes, patch, 128).to(device)
    if "channels_last" in mode:
        net = net.to(memory_format=torch.channels_last_3d)
    model = torch.compile(net) if "compile" in mode else net
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    loss_fn = SegmentationLoss()
    x = torch.randn(2 * batch, 1, patch, patch, patch, device=device)
    y = torch.randint(0, classes, (2 * batch, patch, patch, patch), device=device)
    amp = "bf16" in mode and device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x).float()
        loss = loss_fn(logits, y).total
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    return {"mode": mode, "it_per_s": 1 / dt, "samples_per_s": 2 * batch / dt,
            "tflops": counter.get_total_flops() / dt / 1e12,
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None}


def inference_speed(device: torch.device, size: int, classes: int, tile: int, amp: bool) -> dict:
    """Seconds per stage for one ``size``³ tomogram (untrained weights: timing only)."""
    net = SasiNet.build("deepfinder", classes, 24, 128).backbone.to(device)
    volume = np.random.default_rng(0).normal(size=(size, size, size)).astype(np.float32)
    stages = {}
    t0 = time.perf_counter()
    norm = normalise(volume)
    stages["normalise"] = time.perf_counter() - t0
    segment(net, norm[:tile, :tile, :tile], tile=tile, device=device, amp=amp)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    probs = segment(net, norm, tile=tile, device=device, amp=amp)
    _sync(device)
    stages["network+stitch"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    components_to_particles(probs, [f"c{i}" for i in range(1, classes)], 10.0, "t")
    stages["argmax+cc3d+centroids"] = time.perf_counter() - t0
    return {"size": size, "tile": tile, **stages, "total_s": sum(stages.values())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny sizes for a CPU check")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch, steps, size, tile = (2, 3, 64, 32) if args.small else (16, 50, 512, 128)
    modes = ["fp32", "bf16"] if device.type == "cpu" else ["fp32", "tf32", "bf16", "bf16+channels_last",
                                                            "bf16+compile"]
    rows = [train_step_speed(device, batch, 24, 13, m, steps) for m in modes]
    for r in rows:
        r["peak_fraction"] = r["tflops"] / args.peak_tflops
        print(f"train step {r['mode']:>20}: {r['it_per_s']:8.1f} it/s  {r['samples_per_s']:9.0f} samples/s  "
              f"{r['tflops']:7.2f} TFLOP/s ({100 * r['peak_fraction']:.2f} % of peak)")
    inf = inference_speed(device, size, 13, tile, amp=device.type == "cuda")
    print("inference", {k: round(v, 3) if isinstance(v, float) else v for k, v in inf.items()})
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    out = Path(args.out or f"benchmarks/results/speed-{name.replace(' ', '_').lower()}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": name, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
                               "train_step": rows, "inference": inf}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
