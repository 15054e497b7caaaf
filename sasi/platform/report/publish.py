"""Write a suite report to a folder and attach it to the suite's MLflow parent run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sasi.errors import SasiError
from sasi.platform import tracking
from sasi.platform.report.build import build, write
from sasi.platform.report.data import SuiteData
from sasi.platform.report.load import load
from sasi.platform.report.render import slug
from sasi.platform.report.tables import compute_metrics, compute_table


def attach(data: SuiteData, paths: dict[str, Path]) -> str:
    """Log the report to the suite's MLflow parent run (``report/report.html``, which MLflow previews)."""
    if not data.parent_id or not data.tracking_uri:
        raise SasiError("no MLflow parent run to attach the report to (the report was built from files)")
    tracking.log_artifacts(data.tracking_uri, data.parent_id, [paths["html"], paths["markdown"]], folder="report")
    return data.parent_id


def publish(parent_run_id: str, tracking_uri: str, out: str | Path) -> dict[str, Path]:
    """For the end of a suite: write its report to ``out``, attach it to the parent run, and log compute
    per variant there as metrics (:func:`compute_metrics`)."""
    data = load(parent_run_id, tracking_uri)
    paths = write(build(data), out)
    attach(data, paths)
    tracking.log_metrics(tracking_uri, parent_run_id, compute_metrics(compute_table(data)))
    return paths


def publish_quietly(parent_run_id: str, tracking_uri: str, storage: str, name: str) -> Path | None:
    """:func:`publish` into ``<storage>/<name>/report`` (a temporary folder for remote storage); returns
    ``report.html``, or ``None`` after a one-line warning: a report never fails the suite."""
    if not tracking.is_remote(storage):
        paths = tracking.best_effort("suite report", publish, parent_run_id, tracking_uri,
                                     Path(storage) / name / "report")
        return paths["html"] if paths else None
    with tempfile.TemporaryDirectory() as tmp:
        tracking.best_effort("suite report", publish, parent_run_id, tracking_uri, tmp)
    return None


def make_report(target: str | os.PathLike, out: str | Path | None = None, tracking_uri: str | None = None,
                suite: str | None = None) -> tuple[SuiteData, dict[str, Path]]:
    """Load, build and write a suite report (default folder: ``report-<suite>`` in the working directory)."""
    data = load(target, tracking_uri, suite)
    return data, write(build(data), out or Path(f"report-{slug(data.name)}"))
