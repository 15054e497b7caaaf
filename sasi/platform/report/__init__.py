"""Shareable suite reports: one self-contained HTML file (PNGs embedded as base64) and a Markdown twin.

``sasi report SUITE_DIR_OR_RUN_ID`` reads what ``sasi ablate --storage DIR`` leaves behind, so results can be
passed around without an MLflow server:

- ``DIR/mlflow.db`` and ``DIR/mlartifacts/``: the MLflow store (one parent run per suite, one child run per
  trial, with metrics, tags and PNG artifacts);
- ``DIR/<suite>/results.parquet`` (one row per trial), ``summary.parquet``, ``summary.md``, ``f1_vs_shots.png``.

The report holds the suite summary (mean ± 95 % CI per variant and shot count), the F1-vs-shots plot,
F1 per class, a search's parameter importances and parallel coordinates, compute per variant (trial hours
and GPU-hours), the per-trial table, and per trial its training curves, its slice with true vs predicted
picks and its per-class F1 bars. ``sasi ablate`` and ``sasi tune`` end with :func:`publish_quietly`.

Modules, in reading order: :mod:`.data` (what a report shows), :mod:`.load` (from MLflow and the suite's
files), :mod:`.tables` and :mod:`.figures` (numbers and pictures), :mod:`.build` (sections in report order),
:mod:`.render` (HTML and Markdown), :mod:`.publish` (write and attach).
"""

from sasi.platform.report.build import build, write
from sasi.platform.report.data import SuiteData, Trial
from sasi.platform.report.load import load
from sasi.platform.report.publish import attach, make_report, publish, publish_quietly
from sasi.platform.report.render import Figure, Report, Table
from sasi.platform.report.tables import compute_metrics, compute_table, per_class_table, with_total

__all__ = ["Figure", "Report", "SuiteData", "Table", "Trial", "attach", "build", "compute_metrics",
           "compute_table", "load", "make_report", "per_class_table", "publish", "publish_quietly", "with_total",
           "write"]
