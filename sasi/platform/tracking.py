"""MLflow layout: one experiment, one parent run per suite, one child run per Tune trial.

Every helper takes the tracking URI explicitly (Ray changes the working directory of trial and worker
processes, so a relative or unset URI would scatter databases). Child runs are found again by their
``ray.trial_id`` tag, so a resumed suite reuses them instead of creating duplicates.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from sasi.errors import SasiError

EXPERIMENT = "sasi"
TRIAL_TAG = "ray.trial_id"
SUITE_TAG = "sasi.suite"
ROLE_TAG = "sasi.role"
GIT_SHA_ENV = "SASI_GIT_SHA"  # the submitter's commit, for runs whose source tree has no .git
PACKAGES = ("torch", "ray", "optuna", "mlflow-skinny", "numpy", "sasi")
log = logging.getLogger(__name__)


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def is_remote(path: str | os.PathLike) -> bool:
    return "://" in str(path)


def resolve_tracking_uri(uri: str | None, storage: str | os.PathLike) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else an absolute sqlite DB next to local ``storage``."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            uri = f"sqlite:///{Path(uri[len('sqlite:///'):]).resolve()}"
        return uri
    if is_remote(storage):
        raise SasiError(f"--tracking-uri (or $MLFLOW_TRACKING_URI) is required with remote storage {storage}")
    folder = Path(storage).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder}/mlflow.db"


def ensure_experiment(uri: str, name: str = EXPERIMENT) -> str:
    """Create the experiment once (in the suite driver); local sqlite gets artifacts next to the DB."""
    client = _client(uri)
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = Path(uri[len("sqlite:///"):]).parent.joinpath("mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def _find_run(uri: str, experiment_id: str, tags: Mapping[str, str]) -> str | None:
    filters = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = _client(uri).search_runs([experiment_id], filter_string=filters, max_results=1)
    return runs[0].info.run_id if runs else None


def _reuse_or_create(uri: str, experiment_id: str, key: Mapping[str, str], name: str,
                     tags: Mapping[str, str]) -> str:
    client = _client(uri)
    run_id = _find_run(uri, experiment_id, key)
    if run_id is None:
        return client.create_run(experiment_id, run_name=name, tags={**key, **tags}).info.run_id
    client.update_run(run_id, status="RUNNING")
    return run_id


def parent_run(uri: str, experiment_id: str, suite: str, tags: Mapping[str, str] | None = None) -> str:
    """The suite's run (reused when the suite is resumed)."""
    key = {SUITE_TAG: suite, ROLE_TAG: "suite"}
    run_id = _reuse_or_create(uri, experiment_id, key, suite, {**provenance_tags(), **(tags or {})})
    return run_id


def child_run(uri: str, experiment_id: str, parent_id: str, trial_id: str, name: str,
              tags: Mapping[str, Any] | None = None) -> str:
    """The trial's run under ``parent_id``, found again by ``ray.trial_id`` on restarts."""
    key = {TRIAL_TAG: trial_id, "mlflow.parentRunId": parent_id}
    extra = {ROLE_TAG: "trial", **provenance_tags(), **{k: str(v) for k, v in (tags or {}).items()}}
    return _reuse_or_create(uri, experiment_id, key, name, extra)


def finish(uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Close a run (FINISHED, FAILED or KILLED) so none stays RUNNING."""
    _client(uri).set_terminated(run_id, status=status)


def close_suite(uri: str, experiment_id: str, parent_id: str, status: str = "KILLED",
                tags: Mapping[str, Any] | None = None) -> int:
    """End every RUNNING child run of ``parent_id``, then the parent, as ``status``; returns the children closed."""
    client = _client(uri)
    children = client.search_runs([experiment_id], max_results=10_000, filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'"))
    for run_id in [r.info.run_id for r in children] + [parent_id]:
        for key, value in (tags or {}).items():
            client.set_tag(run_id, key, str(value))
        client.set_terminated(run_id, status=status)
    return len(children)


def retire_parent(uri: str, experiment_id: str, suite: str, archived: str) -> None:
    """Detach a suite's old parent run (``--restart``): it keeps its children but no longer answers to ``suite``."""
    client = _client(uri)
    while (run_id := _find_run(uri, experiment_id, {SUITE_TAG: suite, ROLE_TAG: "suite"})) is not None:
        client.set_tag(run_id, SUITE_TAG, archived)
        client.set_tag(run_id, "sasi.replaced", "true")
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status="KILLED")


def trial_run_id(uri: str, experiment_id: str, trial_id: str) -> str | None:
    return _find_run(uri, experiment_id, {TRIAL_TAG: trial_id})


def run_status(uri: str, run_id: str) -> str:
    return _client(uri).get_run(run_id).info.status


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def log_params(uri: str, run_id: str, params: Mapping[str, Any]) -> None:
    """Log parameters once; values already logged on a reused run are skipped (MLflow forbids changes)."""
    from mlflow.entities import Param

    client = _client(uri)
    have = client.get_run(run_id).data.params
    new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in have]
    for i in range(0, len(new), 100):
        client.log_batch(run_id, params=new[i:i + 100])


def log_metrics(uri: str, run_id: str, metrics: Mapping[str, Any], step: int = 0) -> None:
    """One batched call for all numeric values."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if batch:
        _client(uri).log_batch(run_id, metrics=batch)


def set_tags(uri: str, run_id: str, tags: Mapping[str, Any]) -> None:
    client = _client(uri)
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


def log_artifacts(uri: str, run_id: str, paths: Iterable[Path], folder: str | None = None) -> None:
    client = _client(uri)
    for path in paths:
        client.log_artifact(run_id, str(path), artifact_path=folder)


def best_effort(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, or ``None`` after a one-line warning: for extras that must never fail a suite."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the suite's own results are already logged
        first = str(exc).strip().splitlines()
        log.warning("%s skipped: %s: %s", what, type(exc).__name__, first[0] if first else "")
        return None


def git_sha() -> str:
    """``$SASI_GIT_SHA`` (set it in a ``ray job submit`` runtime env: the job's working_dir has no ``.git``),
    else ``git rev-parse HEAD`` of the source tree, else ``"unknown"``."""
    if os.environ.get(GIT_SHA_ENV, "").strip():
        return os.environ[GIT_SHA_ENV].strip()
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def versions() -> dict[str, str]:
    out = {}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "missing"
    return out


def provenance_tags() -> dict[str, str]:
    return {"git_sha": git_sha(), **{f"version.{k}": v for k, v in versions().items()}}
