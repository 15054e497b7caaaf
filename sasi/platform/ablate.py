"""Ablation suites: variants × shots × seeds as one Tune grid, summarised as mean ± 95% CI.

Suite YAML (``ablations/*.yaml``)::

    name: components
    recipe: tiny-v1         # data recipe, simulated into <storage>/data/<recipe>-seed<data_seed> if missing
    data_seed: 0
    shots: [3, 5, 10]
    seeds: [0, 1, 2]        # few-shot draws and training seeds
    base: {train.iterations: 400}           # SasiConfig overrides (dotted keys) for every variant
    variants:
      sasi: {preset: sasi}
      no-infill: {preset: sasi, overrides: {infill.enabled: false}}
    resources: {workers: 1, gpus_per_worker: 1}   # optional, per trial
    # optional too: each Train worker's Ray resources (override/extend CPU and GPU; custom resources make
    # the autoscaler add the node types that offer them) and a fixed number of trials at once
    # resources: {workers: 1, per_worker: {CPU: 4, GPU: 1, accel_a10g: 1}, max_concurrent: 4}

Overrides written as nested mappings (``base: {train: {iterations: 400}}``) are still read, with a deprecation note.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sasi.config import from_dict, load_yaml, read_overrides, to_dict
from sasi.errors import SasiError
from sasi.presets import preset_config
from sasi.train.config import SasiConfig

QUICK = {"train.iterations": 20, "train.eval_every": 10, "train.batch_size": 2, "data.patch": 16,
         "model.channels": [8, 12, 16], "pretrain.epochs": 1, "pretrain.batch_size": 4, "detect.min_size": 10}


@dataclass
class Variant:
    preset: str
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted SasiConfig keys


@dataclass
class Resources:
    workers: int = 1
    gpus_per_worker: float = 0.0
    per_worker: dict[str, float] = field(default_factory=dict)  # Ray resources of each Train worker
    max_concurrent: int | None = None  # trials at once (default: from the cluster, see trial_resources)

    def validate(self, source: object) -> None:
        if self.workers < 1:
            raise SasiError(f"resources.workers must be >= 1, got {self.workers}", source)
        if self.gpus_per_worker < 0:
            raise SasiError(f"resources.gpus_per_worker must be >= 0, got {self.gpus_per_worker}", source)
        bad = {k: v for k, v in self.per_worker.items() if v < 0 or not isinstance(k, str) or not k}
        if bad:
            raise SasiError(f"resources.per_worker: names must be strings and amounts >= 0, got {bad}", source)
        if self.gpus_per_worker > 0 and "GPU" in self.per_worker:
            raise SasiError("give GPUs once: resources.gpus_per_worker or resources.per_worker.GPU", source)
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise SasiError(f"resources.max_concurrent must be >= 1, got {self.max_concurrent}", source)


@dataclass
class Suite:
    name: str
    recipe: str
    variants: dict[str, Variant]
    shots: list[int]
    seeds: list[int]
    data_seed: int = 0
    base: dict[str, Any] = field(default_factory=dict)  # dotted SasiConfig keys, for every variant
    resources: Resources = field(default_factory=Resources)

    def configs(self, dataset: str, extra: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """Each variant's full config (nested dict): preset + base + variant overrides (+ ``extra``)."""
        out = {}
        for name, v in self.variants.items():
            overrides = {**self.base, **v.overrides, **(extra or {}), "data.dataset": dataset}
            try:
                out[name] = to_dict(preset_config(v.preset, overrides))
            except SasiError as exc:
                raise SasiError(f"variant {name!r}: {exc}") from None
        return out

    def with_overrides(self, overrides: dict[str, Any], source: str = "--set") -> Suite:
        """This suite with ``overrides`` (dotted keys) set in every variant, after its own overrides; validated."""
        if not overrides:
            return self
        checked = read_overrides(SasiConfig, {"": overrides}, source)[""]
        variants = {name: replace(v, overrides={**v.overrides, **checked}) for name, v in self.variants.items()}
        suite = replace(self, variants=variants)
        suite.configs("data")
        return suite


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file (one-line errors naming the file and key)."""
    data = load_yaml(path)
    if data is None:
        raise SasiError("the suite file is empty; it needs name, recipe, shots, seeds and variants", path)
    suite = from_dict(Suite, data, path)
    variant_of = {f"variants.{name}.overrides": variant for name, variant in suite.variants.items()}
    dotted = read_overrides(SasiConfig, {"base": suite.base, **{k: v.overrides for k, v in variant_of.items()}}, path)
    suite.base = dotted["base"]
    for where, variant in variant_of.items():
        variant.overrides = dotted[where]
    if not suite.variants or not suite.shots or not suite.seeds:
        raise SasiError("variants, shots and seeds must be non-empty", path)
    if any(s < 1 for s in suite.shots):
        raise SasiError(f"shots must be >= 1, got {suite.shots}", path)
    suite.resources.validate(path)
    from sasi.simulate import get_recipe

    get_recipe(suite.recipe)
    suite.configs("data")  # validates every variant
    return suite


def ensure_data(suite: Suite, storage: str) -> str:
    """The suite's dataset under ``<storage>/data``, simulated on first use (local storage only)."""
    from sasi.simulate import get_recipe, simulate_dataset

    if "://" in storage:
        raise SasiError("ablation data is generated on local/NFS storage; pass a POSIX --storage")
    folder = Path(storage) / "data" / f"{suite.recipe}-seed{suite.data_seed}"
    if not (folder / "dataset.yaml").is_file():
        recipe = get_recipe(suite.recipe)
        simulate_dataset(folder, recipe.simulation, recipe.splits, seed=suite.data_seed, recipe=recipe.name,
                         progress=False)
    return str(folder.resolve())


def results_frame(grid, metric: str = "test_class_f1"):
    """One row per trial: variant, shots, seed, test metrics, status."""
    import pandas as pd

    from sasi.platform.interrupts import error_line

    rows = []
    for result in grid:
        cfg, m = result.config or {}, result.metrics or {}
        rows.append({"variant": cfg.get("variant"), "shots": cfg.get("shots"), "seed": cfg.get("seed"),
                     "error": error_line(result.error),
                     **{k: v for k, v in m.items() if k.startswith(("test_", "val_")) and isinstance(v, (int, float))},
                     "iteration": m.get("iteration"), "trial_id": m.get("trial_id")})
    frame = pd.DataFrame(rows)
    if metric not in frame:
        frame[metric] = float("nan")
    return frame.sort_values(["variant", "shots", "seed"]).reset_index(drop=True)


def run_suite(suite: Suite, storage: str, tracking_uri: str | None = None, *, quick: bool = False,
              resume: bool = True, restart: bool = False, resume_command: str | None = None,
              console=None) -> tuple[Any, Any]:
    """Run the grid as one Tune experiment; returns (per-trial results, summary). Ray must be connected.

    SIGINT/SIGTERM stop it cleanly: MLflow runs end KILLED, no summary, :class:`~sasi.platform.interrupts.Interrupted`
    names ``resume_command``. ``restart``: the suite's old MLflow parent run is detached (a new run starts).

    Ends with the report (``<storage>/<name>/report/``, :func:`sasi.platform.report.publish_quietly`) on the
    parent run.
    """
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from sasi.platform import interrupts, summary, tracking
    from sasi.platform.figures import f1_vs_shots
    from sasi.platform.progress import Progress, collect_worker_logs, quiet_tune
    from sasi.platform.runtime import reap_orphaned_placement_groups, trial_resources
    from sasi.platform.trial import CloseRuns, ReapOrphans, TrialSpec, trial_driver
    from sasi.platform.report import publish_quietly

    storage = str(Path(storage).resolve())
    name = f"{suite.name}-quick" if quick else suite.name
    uri = tracking.resolve_tracking_uri(tracking_uri, storage)
    experiment = tracking.ensure_experiment(uri)
    if restart:
        tracking.retire_parent(uri, experiment, name, f"{name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    parent = tracking.parent_run(uri, experiment, name, {"kind": "ablation", "recipe": suite.recipe})
    tracking.log_params(uri, parent, {"recipe": suite.recipe, "data_seed": suite.data_seed, "quick": quick,
                                      "shots": suite.shots, "seeds": suite.seeds,
                                      "variants": sorted(suite.variants)})
    with interrupts.guarded(uri, experiment, parent, resume_command or interrupts.command_line()) as stop:
        dataset = ensure_data(suite, storage)
        variants = suite.configs(dataset, QUICK if quick else None)
        r = suite.resources
        trials = len(variants) * len(suite.shots) * len(suite.seeds)
        res = trial_resources(r.workers, r.gpus_per_worker, r.per_worker, max_concurrent=r.max_concurrent,
                              trials=trials, inline=True)  # storage is a local (or mounted) folder here
        spec = TrialSpec(name, storage, uri, experiment, parent, variants=variants, workers=res.workers,
                         gpus_per_worker=res.worker.get("GPU", 0.0), cpus_per_worker=res.worker["CPU"],
                         extra_resources=res.extra, inline=res.inline)
        trainable = tune.with_resources(tune.with_parameters(trial_driver, spec=spec), res.driver)
        path = f"{storage}/{name}"
        if resume and tune.Tuner.can_restore(path):
            reap_orphaned_placement_groups()
            tuner = tune.Tuner.restore(path, trainable, resume_errored=True, restart_errored=False,
                                       resume_unfinished=True)
        else:
            space = {"variant": tune.grid_search(sorted(variants)), "shots": tune.grid_search(suite.shots),
                     "seed": tune.grid_search(suite.seeds)}
            tuner = tune.Tuner(
                trainable, param_space=space,
                # the generator limits concurrency itself (Tune ignores max_concurrent_trials for it)
                tune_config=tune.TuneConfig(search_alg=BasicVariantGenerator(max_concurrent=res.max_concurrent,
                                                                             random_state=0),
                                            reuse_actors=res.reuse_actors),
                run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0,
                                          callbacks=[CloseRuns(uri, experiment), ReapOrphans(),
                                                     Progress(name, trials)],
                                          failure_config=tune.FailureConfig(max_failures=1)),
            )
        quiet_tune()
        try:
            with stop.fit():
                grid = tuner.fit()
        finally:
            logs = collect_worker_logs(f"{path}/logs")
        stop.check()
        results = results_frame(grid)
        table = summary.summarise(results)
        with tempfile.TemporaryDirectory() as tmp:
            files = summary.write(results, table, path if Path(path).is_dir() else tmp)
            files.append(f1_vs_shots(table, Path(files[0]).parent / "f1_vs_shots.png"))
            tracking.log_artifacts(uri, parent, files)
        for row in table.itertuples(index=False):
            tracking.log_metrics(uri, parent, {f"test_class_f1.{row.variant}.{row.shots}shots": row.test_class_f1_mean})
        tracking.finish(uri, parent, "FINISHED" if not results["error"].any() else "FAILED")
    report = publish_quietly(parent, uri, storage, name)  # also GPU-hours per variant on the parent run
    if console is not None:
        console.print(summary.rich_table(table, title=f"{name}: test class-aware F1 (localisation F1), mean ± 95% CI over seeds"))
        console.print(f"results: {path}/results.parquet · summary: {path}/summary.md · MLflow: {uri}"
                      + (f" · report: {report}" if report else "") + (f" · worker logs: {logs}" if logs else ""))
    return results, table
