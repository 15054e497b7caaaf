"""``sasi copick import|export``: a copick project as a sasi dataset, and sasi picks back into it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from sasi.errors import SasiError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="copick projects: import runs as a sasi dataset, export sasi picks as copick picks.")
console = Console()


def _parse_splits(items: list[str]) -> dict[str, list[str]] | None:
    splits: dict[str, list[str]] = {}
    for item in items:
        name, sep, runs = item.partition("=")
        if not sep or not name or not runs:
            raise SasiError(f"--split wants SPLIT=RUN[,RUN...], got {item!r}")
        splits.setdefault(name, []).extend(r for r in runs.split(",") if r)
    return splits or None


@app.command("import")
def import_(
    config: Annotated[Path, typer.Argument(help="copick project config (JSON).")],
    out: Annotated[Path, typer.Argument(help="Dataset folder to write (must not exist or be empty).")],
    voxel_size: Annotated[Optional[float], typer.Option(help="Voxel spacing (Å) to read, if the project has several.")] = None,
    tomo_type: Annotated[Optional[str], typer.Option(help="Tomogram type (e.g. wbp, denoised), if runs have several.")] = None,
    user: Annotated[Optional[str], typer.Option(help="Only picks by this user id (e.g. curation).")] = None,
    session: Annotated[Optional[str], typer.Option(help="Only picks of this session id.")] = None,
    classes: Annotated[Optional[list[str]], typer.Option("--class", help="Particle object to import (repeat; default all).")] = None,
    run: Annotated[Optional[list[str]], typer.Option(help="Run to import (repeat; default all).")] = None,
    split: Annotated[Optional[list[str]], typer.Option(help="SPLIT=RUN[,RUN...] (repeat). Default: 1st labelled run train, 2nd val, rest test.")] = None,
) -> None:
    """Write a copick project's tomograms and picks as a sasi dataset (to train, evaluate or match on)."""
    from sasi.copick import import_copick

    dataset = import_copick(config, out, voxel_size=voxel_size, tomo_type=tomo_type, user_id=user, session_id=session,
                            classes=classes or None, splits=_parse_splits(split or []), runs=run or None)
    counts = {k: len(v) for k, v in dataset.splits.items()}
    console.print(f"[green]wrote[/] {out}: classes {dataset.classes} at {dataset.voxel_size:g} Å, runs per split {counts}",
                  highlight=False)


@app.command()
def export(
    picks: Annotated[Path, typer.Argument(help="sasi picks (Parquet/CSV/STAR), e.g. from sasi predict or sasi match.")],
    config: Annotated[Path, typer.Argument(help="copick project config (JSON).")],
    user: Annotated[str, typer.Option(help="copick user id of the new picks.")] = "sasi",
    session: Annotated[str, typer.Option(help="copick session id of the new picks.")] = "0",
    run: Annotated[Optional[str], typer.Option(help="Put every pick into this run (default: the table's tomogram names).")] = None,
    voxel_size: Annotated[Optional[float], typer.Option(help="Voxel size (Å), needed for pixel STAR input.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace picks of the same run, object, user and session.")] = False,
) -> None:
    """Write sasi picks into a copick project: one picks set per run and particle object."""
    from sasi.io import read_particles
    from sasi.copick import export_picks

    table = read_particles(picks, voxel_size=voxel_size)
    written = export_picks(table, config, user_id=user, session_id=session, run=run, overwrite=overwrite)
    for (name, label), n in written.items():
        console.print(f"{name}: {n} {label} picks", highlight=False)
    console.print(f"[green]wrote[/] {sum(written.values())} picks as user {user!r}, session {session!r}", highlight=False)
