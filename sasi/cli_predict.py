"""``sasi predict``: picks from tomograms with a trained checkpoint (segment → components → one pick per particle)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from sasi.cli_options import SetOption, parse_sets
from sasi.errors import SasiError

console = Console()


def _predict_checks(tomograms: list[Path], out: Path, device: str, names: Optional[list[str]], tile: str = "auto"
                    ) -> list[str]:
    """``sasi predict``'s arguments, checked before the model loads; returns each tomogram's name."""
    from sasi.io.mrc import tomogram_name
    from sasi.io.particles import FORMATS
    from sasi.platform.preflight import check_storage

    if out.suffix.lower() not in FORMATS:
        raise SasiError(f"--out: unknown particle table format {out.suffix!r}; use one of {', '.join(FORMATS)}", out)
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise SasiError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SasiError(f"--device {device}: no CUDA device is available here; use --device cpu (or auto)")
    if tile != "auto" and not (tile.isdigit() and int(tile) >= 8 and int(tile) % 4 == 0):
        raise SasiError(f"--tile must be auto or a multiple of 4 voxels (at least 8), got {tile!r}")
    if names and len(names) != len(tomograms):
        raise SasiError(f"--name given {len(names)} time(s) for {len(tomograms)} tomogram(s): give one per tomogram")
    names = list(names) if names else [tomogram_name(t) for t in tomograms]
    if len(set(names)) != len(names):
        raise SasiError(f"two tomograms would get the same name in the picks ({names}); give --name for each")
    check_storage(out.parent, "--out folder")
    return names


def _tile(asked: str, configured: int, shape: tuple[int, int, int], device) -> int:
    """``--tile``: a number as given; auto on a GPU: the largest tile its free memory holds; else the config's."""
    if asked != "auto":
        return int(asked)
    if device.type != "cuda":
        return configured
    import torch

    from sasi.detect.memory import largest_tile

    return largest_tile(torch.cuda.mem_get_info(device)[0] / 1e9, shape)


def predict(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder or checkpoint.pt from `sasi train`.")],
    tomograms: Annotated[list[Path], typer.Argument(help="MRC tomogram(s) at the training voxel size.")],
    out: Annotated[Path, typer.Option(help="Picks: .parquet, .star or .csv.")] = Path("picks.parquet"),
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    mode: Annotated[Optional[str], typer.Option(help="Detection mode: foreground (one pick per particle) or cc3d-per-class (the paper's); default from the config.")] = None,
    set_: SetOption = None,
    name: Annotated[Optional[list[str]], typer.Option(help="Tomogram name in the picks, once per tomogram (default: the folder of <dataset>/<tomo>/tomogram.mrc, else the file name).")] = None,
    tile: Annotated[str, typer.Option(help="Tile edge in voxels, or auto: on a GPU the largest tile that fits its free memory (fewer, less overlapping tiles), on CPU detect.tile. Never above 296 (the U-Net's tensors must stay under 2^31 elements).")] = "auto",
) -> None:
    """Detect particles in tomograms with a trained model: segment → components → one pick per particle."""
    names = _predict_checks(tomograms, out, device, name, tile)
    import pyarrow as pa

    from sasi.config import apply_overrides
    from dataclasses import replace

    from sasi.detect import maps_to_particles, normalise_on, reclassify, segment
    from sasi.detect.segment import max_tile_edge
    from sasi.io import read_mrc, write_particles
    from sasi.io.mrc import check_tomogram
    from sasi.train.checkpoint import checkpoint_detection, load_checkpoint, resolve_device
    from sasi.train.loop import use_fast_layout

    net, config, state = load_checkpoint(checkpoint)
    config = apply_overrides(config, parse_sets(set_), "--set")  # e.g. detect.tile, train.amp
    dev = resolve_device(device)
    use_fast_layout(net.to(dev), config.train, dev)
    how = checkpoint_detection(config, state)
    console.print(f"classes from {'their shape' if how.shape is not None else 'the network'}, score cut-off "
                  f"{how.min_score:.3g} (detect.class_source {config.detect.class_source}, detect.min_score)")
    settings = replace(config.detect, mode=mode) if mode else config.detect
    tables, shape = [], None
    for path, tomo_name in zip(tomograms, names):
        # memory-mapped: the voxels stream to the device, where NaN/inf and constant volumes are caught
        tomo = read_mrc(path, mmap=True, allow_nan=True, expect_voxel_size=state["voxel_size"])
        check_tomogram(tomo, config.data.patch, path, values=False)
        shape = tomo.shape
        edge = min(_tile(tile, settings.tile, shape, dev), max_tile_edge(net.backbone))
        volume = normalise_on(tomo.data, dev, source=path)
        maps = segment(net.backbone.to(dev), volume, tile=edge, margin=settings.margin, device=dev, amp=config.train.amp)
        found = maps_to_particles(maps, how.geometry, tomo_name, replace(settings, tile=edge), how.min_score).particles
        if how.shape is not None:  # classes from the particles' shape (detect.class_source)
            found = reclassify(found, volume, how.shape, how.geometry.classes, how.geometry.voxel_size)
        tables.append(found)
        console.print(f"{path}: {found.num_rows} particles (network tiles of at most {edge}³ voxels)")
    write_particles(pa.concat_tables(tables), out, voxel_size=state["voxel_size"], shape_zyx=shape)
    console.print(f"[green]wrote[/] {out}")
