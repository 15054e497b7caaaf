"""Gather a suite's results, runs and pictures from an MLflow store and/or the files ``sasi ablate`` leaves.

The target may be the ``--storage`` folder (``mlflow.db``, ``mlartifacts/``, ``<suite>/results.parquet``), the
``<storage>/<suite>`` folder, or an MLflow run ID (the suite's parent run or one of its trials) with a tracking
URI. Without a readable MLflow store the data come from the files alone (no per-trial pictures then).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pandas as pd

from sasi.errors import SasiError
from sasi.platform.report.data import (GRID, SEARCH_PNGS, SEARCH_SUMMARY, TRIAL_PNGS, SuiteData, Trial,
                                       frame_from_trials)
from sasi.platform.figures import training_curves
from sasi.platform.report.figures import png_of
from sasi.platform.tracking import EXPERIMENT, ROLE_TAG, SUITE_TAG, resolve_tracking_uri

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _suite_runs(uri: str, suite: str | None) -> list:
    client = _client(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    query = f"tags.`{ROLE_TAG}` = 'suite'" + (f" and tags.`{SUITE_TAG}` = '{suite}'" if suite else "")
    return client.search_runs([experiment.experiment_id], filter_string=query, max_results=1000,
                              order_by=["attributes.start_time DESC"])


def _pick_parent(runs: list, where: str, suite: str | None, notes: list[str]):
    if not runs:
        raise SasiError(f"no suite run{f' named {suite!r}' if suite else ''} in the MLflow store", where)
    ablations = [r for r in runs if r.data.tags.get("kind") == "ablation"] or runs
    chosen = ablations[0]
    others = sorted({r.data.tags.get(SUITE_TAG, r.info.run_name) for r in runs} -
                    {chosen.data.tags.get(SUITE_TAG, chosen.info.run_name)})
    if others:
        notes.append(f"this store also holds {', '.join(others)} (choose with --suite)")
    return chosen


def _children(uri: str, parent) -> list[Trial]:
    client = _client(uri)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
                              max_results=5000)
    trials = [Trial(r.info.run_id, r.info.run_name or r.info.run_id, r.info.status, dict(r.data.tags),
                    dict(r.data.params), dict(r.data.metrics), r.info.start_time, r.info.end_time) for r in runs]
    return sorted(trials, key=lambda t: (*t.grid_key(), t.name))


def _download(uri: str, run_id: str, names: tuple[str, ...] | None, into: Path) -> dict[str, Path]:
    """Root-level artifacts of a run (those in ``names``, or all) as local files; missing ones skipped."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file otherwise
    client = _client(uri)
    try:
        listed = [a.path for a in client.list_artifacts(run_id) if not a.is_dir]
    except Exception:  # noqa: BLE001 - an unreachable artifact store only costs the pictures
        return {}
    out = {}
    for name in listed:
        if names is None or Path(name).name in names:
            try:
                out[Path(name).name] = Path(client.download_artifacts(run_id, name, str(into)))
            except Exception:  # noqa: BLE001, S112 - a missing picture is no reason to fail the report
                continue
    return out


def _history(uri: str, trial: Trial) -> list[dict[str, float]]:
    """Per-step training losses and validation scores of a trial (for curves when no PNG was logged)."""
    client = _client(uri)
    rows: dict[int, dict[str, float]] = {}
    for key in trial.metrics:
        if key.startswith(("train_", "val_")):
            for m in client.get_metric_history(trial.run_id, key):
                rows.setdefault(int(m.step), {"iteration": float(m.step)})[key] = m.value
    return [rows[s] for s in sorted(rows)]


def _resolve_target(target: str, tracking_uri: str | None) -> tuple[str | None, Path | None, str | None]:
    """(tracking URI, suite results folder or storage folder, run ID) for a path or a run ID."""
    path = Path(target)
    if path.is_dir():
        if (path / "mlflow.db").is_file():
            return tracking_uri or _sqlite_uri(path / "mlflow.db"), path, None
        if (path / "results.parquet").is_file():
            db = path.parent / "mlflow.db"
            return tracking_uri or (_sqlite_uri(db) if db.is_file() else None), path, None
        raise SasiError("neither an MLflow store (mlflow.db) nor suite results (results.parquet) here; "
                        "pass the --storage folder of `sasi ablate` or a run ID", path)
    if RUN_ID.match(target):
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise SasiError(f"{target} looks like a run ID: pass --tracking-uri (or set $MLFLOW_TRACKING_URI)")
        return uri, None, target
    raise SasiError("no such folder, and not an MLflow run ID (32 hex digits)", target)


def _find_parent(uri: str, run_id: str | None, target: str, suite: str | None, notes: list[str],
                 files_only_ok: bool):
    """The suite's parent run, or ``None`` (with a note) when the files alone can make the report."""
    try:
        if run_id:
            run = _client(uri).get_run(run_id)
            parent_id = run.data.tags.get("mlflow.parentRunId")
            return _client(uri).get_run(parent_id) if parent_id else run
        return _pick_parent(_suite_runs(uri, suite), target, suite, notes)
    except SasiError:
        if not files_only_ok:
            raise
        notes.append(f"no MLflow suite run for {suite!r} in {uri}; built from the files only")
    except Exception as exc:  # noqa: BLE001 - e.g. an unreachable server
        if run_id or not files_only_ok:
            raise SasiError(f"cannot read the MLflow store {uri}: {str(exc).splitlines()[0]}") from None
        notes.append(f"MLflow store {uri} unreadable ({str(exc).splitlines()[0]}); built from the files only")
    return None


def _pictures(uri: str, parent, trials: list[Trial], into: Path) -> dict[str, bytes]:
    """Download each trial's PNGs into ``trial.images``; returns the parent run's (a search's) PNGs."""
    files = _download(uri, parent.info.run_id, tuple(SEARCH_PNGS), into / "parent")
    for i, trial in enumerate(trials):
        found = _download(uri, trial.run_id, TRIAL_PNGS, into / str(i))
        trial.images = {k: p.read_bytes() for k, p in found.items()}
        if "training_curves.png" not in trial.images and any(k.startswith(("train_", "val_")) for k in trial.metrics):
            trial.images["training_curves.png"] = png_of(training_curves, _history(uri, trial), title=trial.name)
    return {k: p.read_bytes() for k, p in files.items()}


def _search_summary(uri: str | None, parent, folder: Path | None, name: str, into: Path) -> dict | None:
    """A search's ``search.json``: from ``<storage>/<name>/`` when local, else from its parent run."""
    import json

    for path in ([folder / name / SEARCH_SUMMARY, folder / SEARCH_SUMMARY] if folder is not None else []):
        if path.is_file():
            return json.loads(path.read_text())
    if uri and parent is not None:
        got = _download(uri, parent.info.run_id, (SEARCH_SUMMARY,), into / "summary")
        if SEARCH_SUMMARY in got:
            return json.loads(got[SEARCH_SUMMARY].read_text())
    return None


def load(target: str | os.PathLike, tracking_uri: str | None = None, suite: str | None = None,
         images: bool = True) -> SuiteData:
    """Gather a suite's results, runs and pictures from a storage folder, a suite folder or a run ID."""
    target = str(target)
    uri, folder, run_id = _resolve_target(target, tracking_uri)
    if uri and uri.startswith("sqlite:///"):
        uri = resolve_tracking_uri(uri, ".")
    notes: list[str] = []
    suite_dir: Path | None = None
    if folder is not None and (folder / "results.parquet").is_file() and not (folder / "mlflow.db").is_file():
        suite_dir, suite = folder, suite or folder.name
    parent = _find_parent(uri, run_id, target, suite, notes, suite_dir is not None) if uri else None
    name = (parent.data.tags.get(SUITE_TAG) or parent.info.run_name) if parent else (suite or target)
    if suite_dir is None and folder is not None and (folder / name / "results.parquet").is_file():
        suite_dir = folder / name
    trials = _children(uri, parent) if parent is not None else []
    results, search_images = None, {}
    with tempfile.TemporaryDirectory() as tmp:
        if suite_dir is not None:
            results = pd.read_parquet(suite_dir / "results.parquet")
        elif parent is not None:
            got = _download(uri, parent.info.run_id, ("results.parquet",), Path(tmp))
            if "results.parquet" in got:
                results = pd.read_parquet(got["results.parquet"])
        if images and parent is not None:
            search_images = _pictures(uri, parent, trials, Path(tmp))
        search = _search_summary(uri, parent, folder, name, Path(tmp))
    if results is None or not set(GRID) <= set(results.columns):
        if results is not None and trials:
            notes.append("results.parquet has no variant/shots/seed columns (a search?): table from the runs")
        results = frame_from_trials(trials) if trials else results
    if results is None and search is not None:  # every trial came from an earlier part (--warm-start)
        notes.append("no trials ran in this part: the search summary only")
        results = pd.DataFrame(columns=list(GRID))
    if results is None:
        raise SasiError("found no trials (no results.parquet and no child runs)", target)
    data = SuiteData(name, target, results, trials, uri, notes=notes, images=search_images, search=search)
    if parent is not None:
        data.parent_id, data.parent_status = parent.info.run_id, parent.info.status
        data.parent_tags, data.parent_params = dict(parent.data.tags), dict(parent.data.params)
        data.started = parent.info.start_time
    return data
