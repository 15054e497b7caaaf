"""Full-tomogram inference: seconds end to end and per stage for one 512³ tomogram at 10 Å.

    python benchmarks/inference.py             # GPU: 512³, tiles 192/256/320 and auto (sasi predict's default)
    python benchmarks/inference.py --quick     # CPU smoke: 96³
    python benchmarks/inference.py --tiles 320 auto --autotune 0 1   # GPU: cuDNN heuristics vs its autotuner

The network is first trained briefly (preset df-cc3d on recipe shrec-like-fast-v1) so that its
segmentation is as sparse as a real one; the tomogram is simulated with the same templates (SHREC
classes, Fourier-wedge imaging) and written as MRC. Stages: load (MRC → float32), normalise (on the
device), network+stitch (tiled fully convolutional pass; the segmentation maps kept per tile), picks per
detection mode on the same maps (``foreground``: components, class vote, splitting, merging;
``cc3d-per-class``: the paper's components per argmax class), write (Parquet + STAR). Tiles are balanced cubes
of edge at most ``tile`` with the network's receptive context as margin, so each tiling should equal one
whole-volume pass; each is compared with the largest tile. ``auto`` is ``sasi predict --tile auto``: the
largest tile the GPU's free memory holds (:func:`sasi.detect.memory.largest_tile`), measured last.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from _common import TINY, dev_templates, print_table, train_only_dataset, write_results

from sasi.config import deep_update
from sasi.dataset import load_dataset
from sasi.detect import MODES, DetectConfig, ParticleGeometry, maps_to_particles, normalise_on, segment
from sasi.detect.memory import largest_tile
from sasi.detect.segment import max_tile_edge
from sasi.io import read_mrc, write_mrc, write_particles
from sasi.presets import preset_config
from sasi.simulate import get_recipe
from sasi.simulate.writer import resolve_templates, simulate_tomogram
from sasi.train.loop import fit


def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def run_once(net, path: Path, geometry: ParticleGeometry, tile: int, device: torch.device, out: Path) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stages, t = {}, _clock(device)
    tomo = read_mrc(path, mmap=True, allow_nan=True)  # as `sasi predict`: header now, voxels streamed below
    volume = tomo.data
    stages["load"] = -t + (t := _clock(device))
    norm = normalise_on(volume, device, source=path)  # NaN/inf and constant volumes checked on the device
    stages["normalise"] = -t + (t := _clock(device))
    maps = segment(net, norm, tile=tile, device=device, amp=device.type == "cuda")
    stages["network+stitch"] = -t + (t := _clock(device))
    picks = {}
    for mode in MODES:  # the picks stage of each detection mode, on the same maps
        picks[mode] = maps_to_particles(maps, geometry, "bench", DetectConfig(mode=mode, tile=tile)).particles
        stages[f"picks:{mode}"] = -t + (t := _clock(device))
    found = picks["foreground"]
    write_particles(found, out / "picks.parquet")
    write_particles(found, out / "picks.star", voxel_size=tomo.voxel_size, shape_zyx=volume.shape)
    stages["write"] = _clock(device) - t
    common = stages["load"] + stages["normalise"] + stages["network+stitch"] + stages["write"]
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    return {"tile": tile, "tile_used": min(tile, max_tile_edge(net)), "peak_mem_gb": peak,
            **stages, **{f"total_s:{m}": common + stages[f"picks:{m}"] for m in MODES},
            **{f"picks_{m}": picks[m].num_rows for m in MODES},
            "foreground_pct": 100 * float((maps.labels > 0).float().mean()), "labels": maps.labels}


@contextlib.contextmanager
def autotuned(on: bool):
    """With ``on``: cuDNN benchmarks its algorithms for each tile shape (segment() normally turns that off because
    FIND failed on large 3D tiles on an H100, perhaps the tiles beyond the index limit that are now capped)."""
    segment_module = importlib.import_module("sasi.detect.segment")
    guard, benchmark = segment_module._cudnn_heuristics, torch.backends.cudnn.benchmark
    if on:
        segment_module._cudnn_heuristics, torch.backends.cudnn.benchmark = contextlib.nullcontext, True
    try:
        yield
    finally:
        segment_module._cudnn_heuristics, torch.backends.cudnn.benchmark = guard, benchmark


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--tiles", nargs="*", default=None, help="tile edges; 'auto': sasi predict's default (GPU)")
    p.add_argument("--autotune", nargs="*", type=int, default=[0], choices=[0, 1],
                   help="1: time a run with cuDNN's autotuner on instead of segment()'s heuristics guard (GPU)")
    p.add_argument("--iterations", type=int, default=None, help="training iterations before timing")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quick = args.quick or device.type == "cpu"
    size = args.size or (96 if quick else 512)
    tiles = [int(t) for t in args.tiles or ([80, 96] if quick else [192, 256, 320]) if t != "auto"]
    auto = (args.tiles is None or "auto" in args.tiles) and device.type == "cuda"
    dataset = train_only_dataset("shrec-like-fast-v1")
    overrides = {"data": {"dataset": dataset, "shots": 5}, "train": {"iterations": args.iterations or (20 if quick else 1500),
                                                                      "eval_every": 0}}
    t0 = time.perf_counter()
    result = fit(preset_config("df-cc3d", deep_update(overrides, TINY) if quick else overrides), progress=False)
    print(f"trained {overrides['train']['iterations']} iterations in {time.perf_counter() - t0:.1f} s", flush=True)
    net = result.model.backbone.to(device)
    ds = load_dataset(dataset)
    geometry = ParticleGeometry(result.classes, ds.voxel_size, ds.radii, 0.5)
    recipe = get_recipe("shrec-like-fast-v1", dev_templates())
    sim = replace(recipe.simulation, shape=(size, size, size))
    meta = {"size": size, "voxel_size": sim.voxel_size, "classes": len(result.classes) + 1,
            "trained_iterations": overrides["train"]["iterations"], "quick": quick}
    rows, labels = [], []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        tomo = simulate_tomogram(sim, resolve_templates(sim), seed=1, name="bench")
        path = write_mrc(Path(tmp) / "bench.mrc", tomo.volume, sim.voxel_size)
        del tomo
        print(f"simulated a {size}³ tomogram in {time.perf_counter() - t0:.1f} s", flush=True)
        if auto:  # after the model is on the GPU, as in sasi predict
            tiles = sorted({*tiles, largest_tile(torch.cuda.mem_get_info(device)[0] / 1e9, (size,) * 3)})
        for tile, tune in itertools.product(tiles, args.autotune):  # margin: the network's receptive context, so
            try:  # every tiling should equal one whole-volume pass
                with autotuned(bool(tune)):
                    run_once(net, path, geometry, tile, device, Path(tmp))  # warm-up (and the autotuning)
                    row = {"autotune": bool(tune), **run_once(net, path, geometry, tile, device, Path(tmp))}
            except torch.OutOfMemoryError:
                print(f"tile {tile}: out of GPU memory", flush=True)
                continue
            finally:
                torch.cuda.empty_cache() if device.type == "cuda" else None
            labels.append(row.pop("labels"))
            rows.append(row)
            print(f"tile {tile}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)), flush=True)
            write_results("inference", meta, rows)  # partial results survive a stopped run
    for r, lab in zip(rows, labels):  # against the largest tile: one whole-volume pass if it fitted
        r["agreement_pct"] = 100 * float((lab == labels[-1]).float().mean())
    print_table(rows, {"tile": "d", "tile_used": "d", "autotune": "d", "peak_mem_gb": ".1f", "load": ".3f", "normalise": ".3f", "network+stitch": ".3f",
                       **{f"picks:{m}": ".3f" for m in MODES}, "write": ".3f", **{f"total_s:{m}": ".3f" for m in MODES},
                       **{f"picks_{m}": "d" for m in MODES}, "foreground_pct": ".2f", "agreement_pct": ".3f"})
    print(f"wrote {write_results('inference', meta, rows)}")


if __name__ == "__main__":
    main()
