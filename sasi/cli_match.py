"""``sasi match``: the template-matching baseline on a dataset (thresholds fitted on val, scored on test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

console = Console()


def match(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (sasi simulate or sasi copick import).")],
    split: Annotated[str, typer.Option(help="Split to pick and score.")] = "test",
    val_split: Annotated[str, typer.Option(help="Split whose truth sets each class's score threshold.")] = "val",
    angle_step: Annotated[float, typer.Option(help="Angular sampling in degrees (10: 14 868 rotations, 30: 552).")] = 10.0,
    templates: Annotated[Optional[str], typer.Option(help="Folder of <class>.mrc/.pdb/.cif (default: the simulator's templates).")] = None,
    tilt_range: Annotated[Optional[float], typer.Option(help="± tilt range (°) for the missing wedge (default: from the dataset).")] = None,
    defocus: Annotated[Optional[float], typer.Option(help="CTF defocus (µm) applied to the templates (default: from the dataset).")] = None,
    contrast: Annotated[str, typer.Option(help="Particles dark or bright in the tomogram; auto: from the dataset's imaging (else dark).")] = "auto",
    exclusion: Annotated[float, typer.Option(help="Exclusion sphere radius as a fraction of the class radius.")] = 1.0,
    batch: Annotated[int, typer.Option(help="Rotations per batched FFT (GPU memory ≈ batch × 6 × tomogram size).")] = 16,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out: Annotated[Path, typer.Option(help="Picks with a score column: .parquet, .star or .csv.")] = Path("matches.parquet"),
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write scores, thresholds and timings as JSON.")] = None,
) -> None:
    """Template matching (FFT cross-correlation over rotations, missing-wedge aware) as a baseline."""
    from sasi.dataset import load_dataset
    from sasi.evaluate import scores_table
    from sasi.io import atomic_write, write_particles
    from sasi.match import MatchConfig, match_and_score

    ds = load_dataset(dataset)
    config = MatchConfig(angle_step=angle_step, templates=templates, tilt_range=tilt_range, defocus_um=defocus,
                         contrast=contrast, exclusion=exclusion, batch=batch, device=device)
    report = match_and_score(ds, split, val_split, config, log=console.print)
    shape = ds.tomogram(ds.names(split)[0]).shape
    write_particles(report.picks, out, voxel_size=ds.voxel_size, shape_zyx=shape)
    console.print(scores_table(report.scores))
    console.print(f"thresholds (NCC): { {c: round(t, 3) for c, t in report.thresholds.items()} }", highlight=False)
    console.print(f"[green]wrote[/] {out} ({report.picks.num_rows} picks)")
    if json_out:
        body = {"metrics": report.metrics, "thresholds": report.thresholds, "seconds": report.seconds,
                "settings": report.settings, "scores": report.scores.to_dict()}
        with atomic_write(json_out) as tmp:
            tmp.write_text(json.dumps(body, indent=2, default=str))
