"""The ``sasi`` command line: simulate, inspect, evaluate, train, predict, ablate, tune."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from sasi.errors import SasiError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Few-shot particle detection in cryo-ET tomograms (SaSi) on Ray, Optuna and MLflow.")
console = Console()

from sasi.cli_copick import app as copick_app  # noqa: E402  (sasi copick import|export)
from sasi.cli_match import match as match_command  # noqa: E402  (the template-matching baseline)
from sasi.cli_options import SetOption, parse_sets as _sets, storage_root as _storage  # noqa: E402  (shared options)
from sasi.cli_predict import predict as predict_command  # noqa: E402  (sasi predict)
from sasi.cli_tune import tune as tune_command  # noqa: E402  (sasi tune: the search)

app.add_typer(copick_app, name="copick")


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Output folder (must not exist or be empty).")],
    recipe: Annotated[Optional[str], typer.Option(help="Named benchmark recipe, e.g. tiny-v1, shrec-like-v1.")] = None,
    tomograms: Annotated[Optional[int], typer.Option(help="Number of tomograms (without a recipe: all 'train').")] = None,
    shape: Annotated[Optional[tuple[int, int, int]], typer.Option(help="Z Y X voxels.")] = None,
    voxel_size: Annotated[Optional[float], typer.Option(help="Å per voxel.")] = None,
    snr: Annotated[Optional[float], typer.Option(help="Signal-to-noise ratio.")] = None,
    density: Annotated[Optional[float], typer.Option(help="Fraction of the volume covered by particles.")] = None,
    imaging: Annotated[Optional[str], typer.Option(help="wedge (fast) or tiltseries (realistic).")] = None,
    templates: Annotated[Optional[str], typer.Option(help="'builtin' or a folder of MRC/PDB/mmCIF templates.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (output is deterministic for a seed).")] = 0,
    preview: Annotated[bool, typer.Option(help="Write preview.png (slice with particles) per tomogram.")] = False,
    workers: Annotated[Optional[int], typer.Option(help="Tomograms simulated at once (default: one per 4 CPU cores).")] = None,
) -> None:
    """Simulate SHREC-style tomograms with exact ground truth."""
    from dataclasses import replace

    from sasi.simulate import SimulationConfig, get_recipe, simulate_dataset
    from sasi.simulate.recipes import Recipe

    base = get_recipe(recipe, templates) if recipe else Recipe("custom", SimulationConfig(), {"train": 1})
    overrides = {k: v for k, v in dict(shape=shape, voxel_size=voxel_size, snr=snr, density=density,
                                       imaging=imaging, templates=templates).items() if v is not None}
    if imaging is not None and imaging not in ("wedge", "tiltseries"):
        raise SasiError(f"--imaging must be 'wedge' or 'tiltseries', got {imaging!r}")
    _check_simulation(shape, voxel_size, snr, density, tomograms)
    config = replace(base.simulation, **overrides)
    splits = {"train": tomograms} if tomograms is not None and not recipe else dict(base.splits)
    if any(n < 0 for n in splits.values()) or sum(splits.values()) == 0:
        raise SasiError("--tomograms must be at least 1")
    from sasi.platform.preflight import check_storage

    check_storage(out, "the output folder")
    if workers is not None and workers < 1:
        raise SasiError(f"--workers must be at least 1, got {workers}")
    from sasi.simulate.writer import default_workers

    workers = workers or default_workers()
    dataset = simulate_dataset(out, config, splits, seed=seed, recipe=recipe, preview=preview, workers=workers)
    n = sum(len(v) for v in dataset.splits.values())
    console.print(f"[green]wrote {n} tomogram(s)[/] to {out} · classes {dataset.classes}")


def _check_simulation(shape, voxel_size, snr, density, tomograms) -> None:
    """One-line errors for simulation settings that would crash or make nonsense."""
    if shape is not None and min(shape) < 16:
        raise SasiError(f"--shape: every edge must be at least 16 voxels, got {' '.join(map(str, shape))}")
    if voxel_size is not None and not voxel_size > 0:
        raise SasiError(f"--voxel-size must be > 0 Å, got {voxel_size:g}")
    if snr is not None and not snr > 0:
        raise SasiError(f"--snr must be > 0, got {snr:g}")
    if density is not None and not 0 < density < 1:
        raise SasiError(f"--density is a fraction of the volume: 0 < density < 1, got {density:g}")
    if tomograms is not None and tomograms < 1:
        raise SasiError(f"--tomograms must be at least 1, got {tomograms}")


@app.command()
def inspect(path: Annotated[Path, typer.Argument(help="An MRC volume or a particle table.")]) -> None:
    """Summarise an MRC volume (shape, voxel size, values) or a particle table (counts, ranges)."""
    from sasi.inspect import describe

    console.print(describe(path))


@app.command()
def evaluate(
    pred: Annotated[Path, typer.Option(help="Predicted particles (Parquet/CSV/STAR).")],
    dataset: Annotated[Optional[Path], typer.Option(help="Dataset folder (truth, radii, instance maps).")] = None,
    truth: Annotated[Optional[Path], typer.Option(help="Truth table (default: from --dataset).")] = None,
    split: Annotated[str, typer.Option(help="Dataset split scored when --truth is not given (all its tomograms: unpicked ones count as misses).")] = "test",
    tomogram: Annotated[Optional[list[str]], typer.Option(help="Score only these tomograms of the dataset (repeatable) instead of a split.")] = None,
    rule: Annotated[str, typer.Option(help="shrec (occupancy hit) or distance (one-to-one within r/2).")] = "shrec",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the scores as JSON.")] = None,
) -> None:
    """Score picks against ground truth: class-aware and localisation F1, what every false pick is, per class, CZII F-beta."""
    from sasi.dataset import load_dataset, score_on_dataset
    from sasi.evaluate import evaluate as run_evaluate
    from sasi.evaluate import scores_table
    from sasi.io import read_particles

    if dataset is None:
        raise SasiError("--dataset is required (it gives class radii, voxel size and instance maps)")
    if json_out is not None:
        from sasi.platform.preflight import check_storage

        check_storage(json_out.parent, "--json folder")
    ds = load_dataset(dataset)
    picks = read_particles(pred, voxel_size=ds.voxel_size)
    if truth is None:
        names = list(tomogram) if tomogram else ds.names(split)
        unknown = sorted(set(names) - {n for members in ds.splits.values() for n in members})
        if unknown:
            raise SasiError(f"no tomogram(s) {unknown} in the dataset; it has {sorted(n for m in ds.splits.values() for n in m)}")
        scores = score_on_dataset(ds, picks, names, rule=rule)
    else:
        table = read_particles(truth, voxel_size=ds.voxel_size)
        names = sorted(set(table.column("tomogram").to_pylist()))
        maps = {n: ds.instances(n) for n in names} if rule == "shrec" else None
        scores = run_evaluate(table, picks, rule=rule, voxel_size=ds.voxel_size, radii=ds.radii, instance_maps=maps)
    console.print(scores_table(scores))
    if json_out:
        from sasi.io import atomic_write

        with atomic_write(json_out) as tmp:
            tmp.write_text(json.dumps(scores.to_dict(), indent=2))


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="SasiConfig YAML.")],
    workers: Annotated[int, typer.Option(help="Ray Train workers (0: in this process, without Ray).")] = 1,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per worker (0: CPU).")] = 0.0,
    storage: Annotated[Optional[str], typer.Option(help="Checkpoint root (default $SASI_STORAGE or runs/ray).")] = None,
    name: Annotated[Optional[str], typer.Option(help="Run name (the same name resumes; default: config name).")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (default $MLFLOW_TRACKING_URI; none: no MLflow).")] = None,
    set_: SetOption = None,
) -> None:
    """Train one configuration, distributed with Ray Train (DDP) or in-process."""
    import os

    from sasi.platform import preflight

    preflight.check_storage(_storage(storage))
    from sasi.config import apply_overrides, load_config, to_dict
    from sasi.platform import tracking
    from sasi.platform.runtime import init_ray
    from sasi.platform.train import run_training
    from sasi.train.config import SasiConfig

    cfg = apply_overrides(load_config(SasiConfig, config), _sets(set_), "--set")
    root, run_name = _storage(storage), name or cfg.name
    uri, run_id = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), None
    preflight.train_run(cfg, config, root, uri and tracking.resolve_tracking_uri(uri, root), workers, gpus_per_worker)
    if uri:
        uri = tracking.resolve_tracking_uri(uri, root)
        run_id = tracking.parent_run(uri, tracking.ensure_experiment(uri), run_name, {"kind": "train"})
        tracking.log_params(uri, run_id, tracking.flatten(to_dict(cfg)))
    if workers > 0:
        init_ray(log_to_driver=True)  # one run: its workers' progress is the console's
    outcome = run_training(cfg, workers, gpus_per_worker, root, run_name, uri, run_id)
    if uri and run_id:
        tracking.set_tags(uri, run_id, {"checkpoint": outcome.checkpoint})
        tracking.finish(uri, run_id)
    shown = {k: round(v, 4) for k, v in outcome.metrics.items() if k.startswith("val_") or k == "iteration"}
    console.print(f"[green]done[/] checkpoint {outcome.checkpoint} · {shown}")


app.command("tune")(tune_command)  # defined in cli_tune.py; listed after train


@app.command()
def ablate(
    suite: Annotated[Path, typer.Argument(help="Ablation suite YAML (ablations/*.yaml).")],
    storage: Annotated[Optional[str], typer.Option(help="Results root (default $SASI_STORAGE or runs/ray).")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite in storage).")] = None,
    quick: Annotated[bool, typer.Option(help="Tiny budget (CPU check of the whole suite).")] = False,
    restart: Annotated[bool, typer.Option(help="Start the suite anew where results of a different configuration are stored (they are kept aside).")] = False,
    set_: SetOption = None,
) -> None:
    """Run an ablation grid (variants × shots × seeds) as one Tune run; prints mean ± 95% CI."""
    from sasi.platform import preflight, resume_safety

    preflight.check_storage(_storage(storage))
    from sasi.platform.ablate import load_suite, run_suite
    from sasi.platform.runtime import init_ray

    parsed = load_suite(suite).with_overrides(_sets(set_))
    preflight.check_tracking(preflight.resolved_tracking_uri(tracking_uri))
    dataset = preflight.suite(parsed, _storage(storage), quick)
    resume_safety.suite_resume(parsed, _storage(storage), dataset, quick, restart=restart)
    init_ray()
    results, _ = run_suite(parsed, _storage(storage), tracking_uri, quick=quick, restart=restart, console=console)
    failed = results[results["error"] != ""]
    if len(failed):
        first = failed.iloc[0]
        raise SasiError(f"{len(failed)} of {len(results)} trials failed (first: {first['variant']}, "
                        f"{first['shots']} shots, seed {first['seed']}: {first['error']})")


app.command("predict")(predict_command)
app.command("match")(match_command)


@app.command()
def ui(
    storage: Annotated[Optional[str], typer.Option(help="The suite's --storage folder (default $SASI_STORAGE or runs/ray).")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow store (default $MLFLOW_TRACKING_URI or <storage>/mlflow.db).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1: this machine only; the UIs have no login).")] = "127.0.0.1",
    port: Annotated[Optional[int], typer.Option(help="Port (default 5000 for MLflow, 8080 for optuna-dashboard).")] = None,
    optuna: Annotated[bool, typer.Option("--optuna", help="Start optuna-dashboard on the mirrored Optuna study instead.")] = False,
    study: Annotated[Optional[str], typer.Option(help="With --optuna: the search name (<storage>/<study>-optuna.db).")] = None,
    ui_env: Annotated[Optional[Path], typer.Option(help="A venv with the ui extra, if not this one (default $SASI_UI_ENV).")] = None,
) -> None:
    """Browse results: the MLflow UI on the suite's store, or (--optuna) optuna-dashboard on a search's study."""
    from sasi.platform import ui as browse

    if optuna:
        url_db = browse.optuna_storage(_storage(storage), study)
        port = port or 8080
        command, what, probe = browse.optuna_command(url_db, host, port, ui_env), f"optuna-dashboard ({url_db})", "/"
    else:
        if tracking_uri and tracking_uri.startswith(("http://", "https://")):
            console.print(f"{tracking_uri} is an MLflow server: open it in a browser")
            return
        uri = browse.store_uri(_storage(storage), tracking_uri)
        port = port or 5000
        command, what, probe = browse.mlflow_command(uri, host, port, ui_env), f"MLflow UI ({uri})", "/health"
    browse.check_port(host, port)
    if not optuna and (link := browse.runs_link(uri, browse.url_of(host, port))):
        console.print(f"runs of the suites: {link}", highlight=False, soft_wrap=True)
    if host not in browse.LOOPBACK:
        console.print(f"[yellow]warning:[/] listening on {host}: anyone who reaches this port sees the results")
    code = browse.serve(command, browse.url_of(host, port), probe, what, echo=lambda line: console.print(line, highlight=False, soft_wrap=True))
    if code:
        raise SasiError(f"{command[0]} exited with status {code}")


@app.command()
def report(
    target: Annotated[str, typer.Argument(help="The suite's --storage folder, its <storage>/<suite> folder, or an MLflow run ID.")],
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default ./report-<suite>).")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow store for a run ID (default $MLFLOW_TRACKING_URI).")] = None,
    suite: Annotated[Optional[str], typer.Option(help="Which suite, when the store holds several (default: the latest ablation).")] = None,
    attach: Annotated[bool, typer.Option("--attach", help="Also log the report to the suite's MLflow parent run (report/).")] = False,
) -> None:
    """Write a self-contained HTML report (plots embedded) and a Markdown one of a suite, to share without MLflow."""
    from sasi.platform.report import attach as attach_report
    from sasi.platform.report import make_report

    data, paths = make_report(target, out, tracking_uri, suite)
    for note in data.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    console.print(f"[green]wrote[/] {paths['html']} and {paths['markdown']} ({len(data.results)} trials of {data.name})",
                  highlight=False, soft_wrap=True)
    if attach:
        console.print(f"attached to MLflow run {attach_report(data, paths)} (artifacts report/)", highlight=False)


LIST_OPTIONS = ("--shots",)  # `--shots 3 5 10` (click takes one value per flag: expanded to --shots 3 --shots 5 ...)


def _expand_lists(argv: list[str]) -> list[str]:
    out, flag = [], None
    for arg in argv:
        if flag and arg.lstrip("-").isdigit() and not arg.startswith("-"):
            out += [flag, arg]
            continue
        flag = arg if arg in LIST_OPTIONS else None
        if flag is None:
            out.append(arg)
    return out


def main() -> None:
    """Console entry point: bad input prints one line to stderr and exits with status 1."""
    try:
        app(args=_expand_lists(sys.argv[1:]))
    except SasiError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 1))  # 130/143: a suite or search stopped by SIGINT/SIGTERM
    except KeyboardInterrupt:
        Console(stderr=True).print("[bold red]interrupted[/]", highlight=False)
        sys.exit(130)
