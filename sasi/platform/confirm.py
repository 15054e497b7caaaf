"""``sasi tune … --confirm K``: the best configuration of each study, re-trained with K fresh seeds and scored on
the **test** tomograms (the search saw only the validation tomogram), paired against the tuned baseline.

Seed ``s`` sets both the draw of labelled particles (``data.fewshot_seed``) and the training seed, and the
method and the baseline use the same seeds, so each pair learns from the same labelled particles. The seeds
are fresh: none is the search's own. Results per study in ``search.json`` (``studies[]``): ``test_f1`` (mean
test class-aware F1) ± ``test_ci95`` (95 % t-interval over seeds), ``paired_gain_vs_df`` ± ``paired_ci95``
(mean of the per-seed differences method − baseline, t-interval), per-seed values beside them.
"""

from __future__ import annotations

import json
import math
import tempfile
from itertools import count, islice
from pathlib import Path
from typing import Any

import pandas as pd

from sasi.errors import SasiError

SUMMARY = "search.json"
FIGURE = "search_f1_vs_shots.png"  # on the parent run (an ablation's own is f1_vs_shots.png)
METRIC = "test_class_f1"


def _mean_ci(values: list[float]) -> tuple[float | None, float | None]:
    from sasi.platform.summary import ci95

    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    ci = ci95(pd.Series(values))
    return float(sum(values) / len(values)), None if math.isnan(ci) else ci


def _summary_file(folder: str | Path) -> Path:
    folder = Path(folder)
    if folder.is_file():
        return folder
    if (folder / SUMMARY).is_file():
        return folder / SUMMARY
    raise SasiError(f"no {SUMMARY} here: pass the folder of an earlier search (<storage>/<space>) or "
                    "--baseline-space search_spaces/df-core.yaml", folder)


def baseline_name(baseline: Any) -> str | None:
    if baseline is None:
        return None
    return json.loads(_summary_file(baseline).read_text()).get("name")


def baseline_studies(folder: str | Path, shots: list[int]) -> list[dict[str, Any]]:
    """The studies of an earlier search (its ``search.json``) at ``shots``, to confirm beside this one's."""
    data = json.loads(_summary_file(folder).read_text())
    name = data.get("name")
    found = {int(s["shots"]): s for s in data.get("studies", []) if s.get("method") == name}
    missing = [n for n in shots if n not in found]
    if missing:
        raise SasiError(f"the baseline search {name!r} has no study at shots {missing} (it has {sorted(found)})",
                        _summary_file(folder))
    out = []
    for n in shots:
        entry = {k: v for k, v in found[n].items() if not k.startswith(("test_", "paired_"))}
        if not entry.get("config"):
            raise SasiError(f"the baseline's study at {n} shots has no best configuration", _summary_file(folder))
        out.append({**entry, "source": str(_summary_file(folder))})
    return out


def fresh_seeds(k: int, used: set[int]) -> list[int]:
    return list(islice((s for s in count(1) if s not in used), k))


def confirm(summary: dict[str, Any], k: int, ctx: dict[str, Any], baseline: str | None) -> pd.DataFrame:
    """Train every study's best configuration with ``k`` fresh seeds (one Tune grid), score on test, and fill in
    each study's ``test_f1``, ``test_ci95``, ``paired_gain_vs_df``, ``paired_ci95`` in ``summary``."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from sasi.platform import tracking
    from sasi.platform.interrupts import error_line
    from sasi.platform.runtime import reap_orphaned_placement_groups
    from sasi.platform.trial import CloseRuns, ReapOrphans, TrialSpec, trial_driver

    studies = [s for s in summary["studies"] if s.get("config")]
    if not studies:
        return pd.DataFrame()
    datasets = {s["config"]["data"]["dataset"] for s in studies}
    if len(datasets) > 1:
        raise SasiError(f"the method and the baseline were searched on different datasets {sorted(datasets)}: "
                        "a paired comparison needs the same tomograms")
    used = {int(s["config"]["data"]["fewshot_seed"]) for s in studies} | {int(s["config"]["train"]["seed"]) for s in studies}
    seeds = fresh_seeds(k, used)
    variants = {f"{s['method']}-N{s['shots']}": s["config"] for s in studies}
    storage, uri, res = ctx["storage"], ctx["uri"], ctx["resources"]
    name = summary["name"]
    spec = TrialSpec(f"{name}-confirm", storage, uri, ctx["experiment"], ctx["parent"], variants=variants,
                     workers=res.workers, gpus_per_worker=res.worker.get("GPU", 0.0), cpus_per_worker=res.worker["CPU"],
                     extra_resources=res.extra, split="test", tags={"sasi.phase": "confirm"}, inline=res.inline)
    trainable = tune.with_resources(tune.with_parameters(trial_driver, spec=spec), res.driver)
    folder = f"{storage.rstrip('/')}/{name}"
    if ctx["resume"] and tune.Tuner.can_restore(f"{folder}/confirm"):
        reap_orphaned_placement_groups()
        tuner = tune.Tuner.restore(f"{folder}/confirm", trainable, resume_errored=True, restart_errored=False,
                                   resume_unfinished=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space={"variant": tune.grid_search(sorted(variants)), "seed": tune.grid_search(seeds)},
            tune_config=tune.TuneConfig(search_alg=BasicVariantGenerator(max_concurrent=res.max_concurrent),
                                        reuse_actors=res.reuse_actors),
            run_config=tune.RunConfig(name="confirm", storage_path=folder,
                                      callbacks=[CloseRuns(uri, ctx["experiment"]), ReapOrphans()],
                                      failure_config=tune.FailureConfig(max_failures=1)))
    with ctx["stop"].fit():
        grid = tuner.fit()
    ctx["stop"].check()
    rows = [{"variant": (r.config or {}).get("variant"), "seed": (r.config or {}).get("seed"),
             "error": error_line(r.error) if r.error else "",
             **{key: v for key, v in (r.metrics or {}).items() if key.startswith(("test_", "val_"))
                and isinstance(v, (int, float))}} for r in grid]
    frame = pd.DataFrame(rows)
    _fill(summary, studies, frame, seeds, baseline)
    metrics = {}
    for s in studies:
        tag = f"{s['method']}.N{s['shots']}"
        metrics.update({f"confirm/{METRIC}.{tag}": s["test_f1"], f"confirm/{METRIC}_ci95.{tag}": s["test_ci95"],
                        f"confirm/paired_gain.{tag}": s.get("paired_gain_vs_df"),
                        f"confirm/paired_ci95.{tag}": s.get("paired_ci95")})
    tracking.log_metrics(uri, ctx["parent"], {k: v for k, v in metrics.items() if v is not None})
    return frame


def _fill(summary: dict, studies: list[dict], frame: pd.DataFrame, seeds: list[int], baseline: str | None) -> None:
    def per_seed(study: dict) -> dict[int, float]:
        mine = frame[(frame["variant"] == f"{study['method']}-N{study['shots']}") & (frame["error"] == "")]
        if METRIC not in mine:
            return {}
        return {int(r["seed"]): float(r[METRIC]) for _, r in mine.iterrows() if pd.notna(r[METRIC])}

    scores = {(s["method"], s["shots"]): per_seed(s) for s in studies}
    summary["confirm_seeds"] = seeds
    summary["baseline"] = baseline
    for s in studies:
        mine = scores[(s["method"], s["shots"])]
        s["test_f1_per_seed"] = {str(k): v for k, v in sorted(mine.items())}
        s["test_f1"], s["test_ci95"] = _mean_ci(list(mine.values()))
        s["confirm_failed"] = len(seeds) - len(mine)
        ref = scores.get((baseline, s["shots"])) if baseline and s["method"] != baseline else None
        if ref is None:
            s["paired_gain_vs_df"] = s["paired_ci95"] = None
            continue
        diffs = [mine[seed] - ref[seed] for seed in seeds if seed in mine and seed in ref]
        s["paired_gain_per_seed"] = diffs
        s["paired_gain_vs_df"], s["paired_ci95"] = _mean_ci(diffs)


def summary_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per study: what ``search.json`` holds, flat (best configuration as ``key=value`` text)."""
    rows = []
    for s in summary.get("studies", []):
        best = ", ".join(f"{k}={_short(v)}" for k, v in (s.get("best_config") or {}).items())
        top = sorted((s.get("importances") or {}).items(), key=lambda kv: -kv[1])[:3]
        rows.append({"method": s["method"], "shots": s["shots"], "trials": s.get("trials"),
                     "failed": s.get("failed"), "best_val_f1": s.get("best_val_f1"), "test_f1": s.get("test_f1"),
                     "test_ci95": s.get("test_ci95"), "paired_gain_vs_df": s.get("paired_gain_vs_df"),
                     "paired_ci95": s.get("paired_ci95"),
                     "search_vs_grid": (s.get("cost") or {}).get("search_vs_grid"), "best_config": best or "–",
                     "importances": ", ".join(f"{k} {v:.2f}" for k, v in top) or "–"})
    return pd.DataFrame(rows)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def f1_vs_n(summary: dict[str, Any], path: Path) -> Path:
    """Test class-aware F1 (mean ± 95 % CI over the confirmation seeds; best val F1 where not confirmed)
    against shots, one line per method."""
    from sasi.platform.figures import f1_vs_shots

    rows = []
    for s in summary.get("studies", []):
        confirmed = s.get("test_f1") is not None
        value = s.get("test_f1") if confirmed else s.get("best_val_f1")
        if value is not None:
            label = s["method"] + ("" if confirmed else " (best val)")
            rows.append({"variant": label, "shots": s["shots"], f"{METRIC}_mean": value,
                         f"{METRIC}_ci95": s.get("test_ci95") or 0.0})
    return f1_vs_shots(pd.DataFrame(rows), path, metric=METRIC)


def write_summary(summary: dict[str, Any], folder: str, uri: str | None, parent: str | None) -> Path | None:
    """``<folder>/search.json``, ``search.md`` and :data:`FIGURE` (local storage), also on the parent run."""
    from sasi.platform import tracking
    from sasi.platform.report.render import Table

    text = json.dumps(_nan_to_none(summary), indent=1, default=str)
    table = summary_frame(summary)
    markdown = (f"# {summary['name']}: one study per shot count\n\n"
                f"test_f1 ± test_ci95: test class-aware F1 over confirmation seeds {summary.get('confirm_seeds', [])}; "
                f"paired gain against {summary.get('baseline') or 'no baseline'} on the same seeds\n\n"
                + Table.of(table).markdown())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) if tracking.is_remote(folder) else Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / SUMMARY).write_text(text)
        (out / "search.md").write_text(markdown)
        files = [out / SUMMARY, out / "search.md"]
        if not table.empty:
            files.append(tracking.best_effort("F1-vs-N figure", f1_vs_n, summary, out / FIGURE))
        if uri and parent:
            tracking.log_artifacts(uri, parent, [f for f in files if f is not None])
        return None if tracking.is_remote(folder) else out / SUMMARY


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value
