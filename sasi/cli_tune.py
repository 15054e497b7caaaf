"""``sasi tune``: the search (one Optuna study per shot count on Ray Tune, tracked in MLflow, optionally confirmed on
the test tomograms against a tuned baseline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from sasi.cli_options import SetOption, parse_sets, storage_root
from sasi.errors import SasiError

console = Console()


def tune(
    space: Annotated[Path, typer.Argument(help="Search-space YAML (search_spaces/*.yaml).")],
    trials: Annotated[int, typer.Option(help="Trials per study (one study per shot count).")] = 8,
    gpus_per_trial: Annotated[str, typer.Option(help="GPUs per trial (fractions share a GPU; 0: CPU; auto: trials per GPU from memory).")] = "0",
    workers_per_trial: Annotated[int, typer.Option(help="Ray Train workers per trial.")] = 1,
    scheduler: Annotated[str, typer.Option(help="asha (early stopping) or none.")] = "asha",
    storage: Annotated[Optional[str], typer.Option(help="Results root (default $SASI_STORAGE or runs/ray).")] = None,
    tracking_uri: Annotated[Optional[str], typer.Option(help="MLflow URI (default $MLFLOW_TRACKING_URI or sqlite in storage).")] = None,
    seed: Annotated[int, typer.Option(help="TPE sampler seed.")] = 0,
    shots: Annotated[Optional[list[int]], typer.Option(help="Shot counts, one study each (repeat or list: --shots 3 5 10; default: the space's shots:).")] = None,
    confirm: Annotated[int, typer.Option(help="Re-train each study's best config with K fresh seeds, scored on the test tomograms.")] = 0,
    baseline_space: Annotated[Optional[Path], typer.Option(help="Search this baseline space the same way (e.g. search_spaces/df-core.yaml) and pair against it.")] = None,
    baseline: Annotated[Optional[Path], typer.Option(help="Pair against an earlier baseline search: its folder <storage>/<space> (search.json).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted search (Tuner.restore).")] = False,
    restart: Annotated[bool, typer.Option(help="Start a new search where one is stored (the old one is kept aside).")] = False,
    warm_start: Annotated[Optional[Path], typer.Option(help="Storage of an earlier part of this search: its finished trials count towards --trials and teach the sampler; only the rest run.")] = None,
    start_within: Annotated[Optional[float], typer.Option(help="Start no trial later than this many seconds into the search; running trials finish (a machine lent for a fixed time; continue with --warm-start).")] = None,
    set_: SetOption = None,
) -> None:
    """Optuna TPE search over a YAML space with Ray Tune (+ ASHA), one study per shot count, tracked in MLflow."""
    from sasi.platform import preflight, resume_safety

    preflight.check_storage(storage_root(storage))
    from sasi.platform.runtime import init_ray
    from sasi.platform.search_space import load_search_space
    from sasi.platform.tune import run_search

    if scheduler not in ("asha", "none"):
        raise SasiError(f"--scheduler must be asha or none, got {scheduler!r}")
    if baseline is not None and baseline_space is not None:
        raise SasiError("give one baseline: --baseline-space (search it now) or --baseline (an earlier search's folder)")
    if confirm < 0:
        raise SasiError(f"--confirm must be >= 0, got {confirm}")
    if start_within is not None and start_within <= 0:
        raise SasiError(f"--start-within must be > 0 seconds, got {start_within:g}")
    parsed = load_search_space(space).with_overrides(parse_sets(set_))
    base_parsed = load_search_space(baseline_space).with_overrides(parse_sets(set_)) if baseline_space else None
    studies = list(shots or parsed.shots)
    if any(n < 1 for n in studies):
        raise SasiError(f"--shots must be >= 1, got {studies}")
    preflight.check_tracking(preflight.resolved_tracking_uri(tracking_uri))
    gpus = preflight.gpus_per_trial(gpus_per_trial)
    for checked in [parsed] + ([base_parsed] if base_parsed else []):
        preflight.search(checked, trials, workers_per_trial, 0.0 if gpus is None else gpus, shots=studies)
    settings = {"trials": trials, "scheduler": scheduler, "seed": seed, "shots": studies, "confirm": confirm,
                "baseline": str(baseline or baseline_space or ""),
                **({"warm_start": str(warm_start)} if warm_start else {})}  # unchanged hash for searches without it
    if warm_start is not None:
        from sasi.platform.searcher import check_warm_start

        check_warm_start(warm_start, [parsed] + ([base_parsed] if base_parsed else []), studies)
    resume_safety.search_resume(parsed, storage_root(storage), settings, resume=resume, restart=restart)
    init_ray()
    if gpus is None:
        from sasi.platform.packing import auto_packing

        import ray

        packing = auto_packing(parsed.config(), cpus=ray.cluster_resources().get("CPU"))
        console.print(f"--gpus-per-trial auto: {packing.gpus_per_trial:g} ({packing.why})")
        gpus = packing.gpus_per_trial
    out = run_search(parsed, trials, gpus, None if scheduler == "none" else scheduler, storage_root(storage),
                     tracking_uri, resume, workers_per_trial=workers_per_trial, seed=seed, restart=restart,
                     shots=studies, confirm=confirm, baseline=base_parsed or baseline, warm_start=warm_start,
                     start_within=start_within)
    for study in out.summary.get("studies", []):
        shown = f"test F1 {study['test_f1']:.3f}" if study.get("test_f1") is not None else ""
        if study.get("paired_gain_vs_df") is not None:
            shown += f", paired gain {study['paired_gain_vs_df']:+.3f} ± {study.get('paired_ci95') or 0:.3f}"
        console.print(f"[green]{study['method']} N={study['shots']}[/] best val F1 {study.get('best_val_f1')} "
                      f"{shown} with {study.get('best_config')}", highlight=False)
    console.print(f"results: {out.path}" + (f" · summary: {out.summary_file}" if out.summary_file else "")
                  + (f" · report: {out.report}" if out.report else ""))
