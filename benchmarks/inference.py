"""Full-tomogram inference: seconds end to end and per stage for one 512³ tomogram at 10 Å.

    python benchmarks/inference.py             # GPU: 512³, tiles 64/128/192
    python benchmarks/inference.py --quick     # CPU smoke: 96³

The network is first trained briefly (preset df-cc3d on recipe shrec-like-fast-v1) so that its
segmentation is as sparse as a real one; the tomogram is simulated with the same templates (SHREC
classes, Fourier-wedge imaging) and written as MRC. Stages: load (MRC → float32), normalise (on the
device), network+stitch (tiled fully convolutional pass, argmax and its probability kept per tile),
components (26-connected, per class, on the device), centroids (+ table), write (Parquet + STAR).
Tiles are balanced cubes of edge at most ``tile`` with the network's receptive context as margin, so each
tiling should equal one whole-volume pass; each is compared with the largest tile (512: the whole volume).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from _common import TINY, dev_templates, print_table, train_only_dataset, write_results

from sasi.config import deep_update
from sasi.detect import components_to_particles, foreground_components, normalise_on, segment
from sasi.io import read_mrc, write_mrc, write_particles
from sasi.presets import preset_config
from sasi.simulate import get_recipe
from sasi.simulate.writer import resolve_templates, simulate_tomogram
from sasi.train.loop import fit


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def run_once(net, path: Path, classes: list[str], tile: int, device: torch.device, out: Path) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stages, t = {}, _clock(device)
    tomo = read_mrc(path)
    volume = tomo.data.copy()  # memory-mapped → in memory
    stages["load"] = -t + (t := _clock(device))
    norm = normalise_on(volume, device)
    stages["normalise"] = -t + (t := _clock(device))
    labels, confidence = segment(net, norm, tile=tile, device=device, amp=device.type == "cuda")
    stages["network+stitch"] = -t + (t := _clock(device))
    foreground_components(labels)
    stages["components"] = -t + (t := _clock(device))
    found = components_to_particles(labels, confidence, classes, tomo.voxel_size, "bench")  # repeats components
    stages["centroids"] = max(_clock(device) - t - stages["components"], 0.0)
    t = _clock(device)
    write_particles(found.particles, out / "picks.parquet")
    write_particles(found.particles, out / "picks.star", voxel_size=tomo.voxel_size, shape_zyx=volume.shape)
    stages["write"] = _clock(device) - t
    return {"tile": tile, "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None,
            **stages, "total_s": sum(stages.values()),
            "picks": found.particles.num_rows, "foreground_pct": 100 * float((labels > 0).float().mean()),
            "labels": labels}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--tiles", nargs="*", type=int, default=None)
    p.add_argument("--iterations", type=int, default=None, help="training iterations before timing")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quick = args.quick or device.type == "cpu"
    size = args.size or (96 if quick else 512)
    tiles = args.tiles or ([80, 96] if quick else [128, 192, 256, 320, 512])
    dataset = train_only_dataset("shrec-like-fast-v1")
    overrides = {"data": {"dataset": dataset, "shots": 5}, "train": {"iterations": args.iterations or (20 if quick else 1500),
                                                                      "eval_every": 0}}
    result = fit(preset_config("df-cc3d", deep_update(overrides, TINY) if quick else overrides), progress=False)
    net = result.model.backbone.to(device)
    recipe = get_recipe("shrec-like-fast-v1", dev_templates())
    sim = replace(recipe.simulation, shape=(size, size, size))
    with tempfile.TemporaryDirectory() as tmp:
        tomo = simulate_tomogram(sim, resolve_templates(sim), seed=1, name="bench")
        path = write_mrc(Path(tmp) / "bench.mrc", tomo.volume, sim.voxel_size)
        del tomo
        rows = []
        for tile in tiles:  # margin: the network's receptive context, so every tiling should equal one pass
            try:
                run_once(net, path, result.classes, tile, device, Path(tmp))  # warm-up
                rows.append(run_once(net, path, result.classes, tile, device, Path(tmp)))
            except torch.OutOfMemoryError:
                print(f"tile {tile}: out of GPU memory")
            torch.cuda.empty_cache() if device.type == "cuda" else None
    reference = rows[-1]["labels"]  # the largest tile: one whole-volume pass if it fitted
    for r in rows:
        r["agreement_pct"] = 100 * float((r.pop("labels") == reference).float().mean())
    print_table(rows, {"tile": "d", "peak_mem_gb": ".1f", "load": ".3f", "normalise": ".3f", "network+stitch": ".3f",
                       "components": ".3f", "centroids": ".3f", "write": ".3f", "total_s": ".3f", "picks": "d",
                       "foreground_pct": ".2f", "agreement_pct": ".3f"})
    out = write_results("inference", {"size": size, "voxel_size": sim.voxel_size, "classes": len(result.classes) + 1,
                                      "trained_iterations": overrides["train"]["iterations"], "quick": quick}, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
