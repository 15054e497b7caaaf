"""Shareable suite reports: one self-contained HTML file (PNGs embedded as base64) and a Markdown twin.

``sasi report SUITE_DIR_OR_RUN_ID`` reads what ``sasi ablate --storage DIR`` leaves behind, so results can be
passed around without an MLflow server:

- ``DIR/mlflow.db`` and ``DIR/mlartifacts/``: the MLflow store (one parent run per suite, one child run per
  trial, with metrics, tags and PNG artifacts);
- ``DIR/<suite>/results.parquet`` (one row per trial), ``summary.parquet``, ``summary.md``, ``f1_vs_shots.png``.

The target may be that storage folder, the ``DIR/<suite>`` folder, or an MLflow run ID (the suite's parent
run or one of its trials) together with ``--tracking-uri``. Without a readable MLflow store the report is
built from the files alone (no per-trial pictures then).

The report holds the suite summary (mean ± 95 % CI per variant and shot count), the F1-vs-shots plot,
F1 per class, a search's parameter importances and parallel coordinates, compute per variant (trial hours
and GPU-hours), the per-trial table, and per trial its training curves, its slice with true vs predicted
picks and its per-class F1 bars. ``sasi ablate`` and ``sasi tune`` end with :func:`publish_quietly`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sasi.errors import SasiError

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
GRID = ("variant", "shots", "seed")
TRIAL_PNGS = ("training_curves.png", "slice.png", "per_class_f1.png")
SEARCH_PNGS = {"param_importances.png": "parameter importances (PED-ANOVA)",  # a search's parent run
               "parallel_coordinates.png": "parallel coordinates of the complete trials"}
# tags or params that tell how many GPUs one trial held (first found wins; see ``gpus_per_trial``)
GPU_KEYS = ("sasi.gpus", "gpus_per_trial", "resources.gpus_per_trial")


@dataclass
class Trial:
    """One trial (MLflow child run)."""

    run_id: str
    name: str
    status: str
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    start_ms: int | None = None
    end_ms: int | None = None
    images: dict[str, bytes] = field(default_factory=dict)  # file name → PNG bytes

    def grid(self, key: str) -> Any:
        value = self.tags.get(key, self.params.get(f"sampled.{key}"))
        if key in ("shots", "seed") and value is not None:
            try:
                return int(float(value))
            except ValueError:
                return value
        return value

    @property
    def hours(self) -> float:
        if not self.start_ms or not self.end_ms:
            return math.nan
        return max(0.0, (self.end_ms - self.start_ms) / 3.6e6)

    @property
    def gpus(self) -> float | None:
        for key in GPU_KEYS:
            value = self.tags.get(key, self.params.get(key))
            if value not in (None, ""):
                try:
                    return float(value)
                except ValueError:
                    pass
        return None


@dataclass
class SuiteData:
    """Everything a report shows, from an MLflow store and/or the suite's files."""

    name: str
    source: str
    results: pd.DataFrame  # one row per trial
    trials: list[Trial] = field(default_factory=list)
    tracking_uri: str | None = None
    parent_id: str | None = None
    parent_status: str | None = None
    parent_tags: dict[str, str] = field(default_factory=dict)
    parent_params: dict[str, str] = field(default_factory=dict)
    started: int | None = None  # ms since the epoch
    notes: list[str] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)  # the parent run's SEARCH_PNGS


# ---- loading --------------------------------------------------------------------------------------

def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _suite_runs(uri: str, suite: str | None) -> list:
    from sasi.platform.tracking import EXPERIMENT, ROLE_TAG, SUITE_TAG

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
    others = sorted({r.data.tags.get("sasi.suite", r.info.run_name) for r in runs} -
                    {chosen.data.tags.get("sasi.suite", chosen.info.run_name)})
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
    return sorted(trials, key=lambda t: (str(t.grid("variant")), _num(t.grid("shots")), _num(t.grid("seed")),
                                         t.name))


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.inf


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


def _frame_from_trials(trials: list[Trial]) -> pd.DataFrame:
    rows = []
    for t in trials:
        row = {k: t.grid(k) for k in GRID}
        row.update({k: v for k, v in t.metrics.items() if k.startswith(("test_", "val_"))})
        row["iteration"] = t.metrics.get("iteration")
        row["error"] = "" if t.status in ("FINISHED", "RUNNING") else t.status
        row["run_id"] = t.run_id
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "test_f1" not in frame:
        frame["test_f1"] = math.nan
    return frame


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


def load(target: str | os.PathLike, tracking_uri: str | None = None, suite: str | None = None,
         images: bool = True) -> SuiteData:
    """Gather a suite's results, runs and pictures from a storage folder, a suite folder or a run ID."""
    from sasi.platform.tracking import resolve_tracking_uri

    target = str(target)
    uri, folder, run_id = _resolve_target(target, tracking_uri)
    if uri and uri.startswith("sqlite:///"):
        uri = resolve_tracking_uri(uri, ".")
    notes: list[str] = []
    suite_dir: Path | None = None
    if folder is not None and (folder / "results.parquet").is_file() and not (folder / "mlflow.db").is_file():
        suite_dir, suite = folder, suite or folder.name
    parent = None
    if uri:
        try:
            if run_id:
                run = _client(uri).get_run(run_id)
                parent_id = run.data.tags.get("mlflow.parentRunId")
                parent = _client(uri).get_run(parent_id) if parent_id else run
            else:
                parent = _pick_parent(_suite_runs(uri, suite), target, suite, notes)
        except SasiError:
            if suite_dir is None:
                raise
            notes.append(f"no MLflow suite run for {suite!r} in {uri}; built from the files only")
        except Exception as exc:  # noqa: BLE001 - e.g. an unreachable server
            if run_id or suite_dir is None:
                raise SasiError(f"cannot read the MLflow store {uri}: {str(exc).splitlines()[0]}") from None
            notes.append(f"MLflow store {uri} unreadable ({str(exc).splitlines()[0]}); built from the files only")
    name = (parent.data.tags.get("sasi.suite") or parent.info.run_name) if parent else (suite or target)
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
            files = _download(uri, parent.info.run_id, tuple(SEARCH_PNGS), Path(tmp) / "parent")
            search_images = {k: p.read_bytes() for k, p in files.items()}
            for i, trial in enumerate(trials):
                files = _download(uri, trial.run_id, TRIAL_PNGS, Path(tmp) / str(i))
                trial.images = {k: p.read_bytes() for k, p in files.items()}
    if results is None or not set(GRID) <= set(results.columns):
        if results is not None and trials:
            notes.append("results.parquet has no variant/shots/seed columns (a search?): table from the runs")
        results = _frame_from_trials(trials) if trials else results
    if results is None:
        raise SasiError("found no trials (no results.parquet and no child runs)", target)
    data = SuiteData(name, target, results, trials, uri, notes=notes, images=search_images)
    if parent is not None:
        data.parent_id, data.parent_status = parent.info.run_id, parent.info.status
        data.parent_tags, data.parent_params = dict(parent.data.tags), dict(parent.data.params)
        data.started = parent.info.start_time
        if images:
            for trial in trials:
                if "training_curves.png" not in trial.images and any(k.startswith(("train_", "val_"))
                                                                     for k in trial.metrics):
                    trial.images["training_curves.png"] = _png_of(_training_curves, _history(uri, trial),
                                                                  trial.name)
    return data


# ---- tables and figures ---------------------------------------------------------------------------

def _png_of(draw, *args, **kwargs) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(*args, path=path, **kwargs)
        return path.read_bytes()


def _training_curves(history, title, path):
    from sasi.platform.figures import training_curves

    training_curves(history, path, title=title)


def _per_class_columns(results: pd.DataFrame, split: str = "test") -> list[str]:
    return sorted(c for c in results.columns if c.startswith(f"{split}_f1.") and results[c].notna().any())


def per_class_table(results: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Mean and 95 % CI of F1 per class for each (variant, shots), long format."""
    from sasi.platform.summary import ci95

    rows = []
    columns = _per_class_columns(results, split)
    for (variant, shots), group in results.groupby(["variant", "shots"], sort=True):
        for column in columns:
            rows.append({"variant": variant, "shots": shots, "class": column.split(".", 1)[1],
                         "f1_mean": group[column].mean(), "f1_ci95": ci95(group[column])})
    return pd.DataFrame(rows, columns=["variant", "shots", "class", "f1_mean", "f1_ci95"])


def per_class_figure(table: pd.DataFrame, path: str | Path) -> Path:
    """Grouped bars: F1 per class, one bar per variant (± CI), one panel per shot count."""
    import matplotlib.pyplot as plt
    import numpy as np

    from sasi.plots import save_figure

    shots = sorted(table["shots"].unique())
    classes = sorted(table["class"].unique())
    variants = sorted(table["variant"].unique())
    fig, axes = plt.subplots(1, len(shots), figsize=(max(5.0, 0.9 * len(classes) * len(shots) + 2), 3.8),
                             dpi=100, squeeze=False, sharey=True)
    width = 0.8 / max(1, len(variants))
    for ax, n in zip(axes[0], shots):
        for i, variant in enumerate(variants):
            rows = table[(table["shots"] == n) & (table["variant"] == variant)].set_index("class")
            means = [rows["f1_mean"].get(c, np.nan) for c in classes]
            errs = [0.0 if pd.isna(e) else e for e in (rows["f1_ci95"].get(c, np.nan) for c in classes)]
            ax.bar(np.arange(len(classes)) + (i - (len(variants) - 1) / 2) * width, means, width, yerr=errs,
                   capsize=2, label=str(variant))
        ax.set_xticks(range(len(classes)), classes, rotation=30 if len(classes) > 4 else 0,
                      ha="right" if len(classes) > 4 else "center", fontsize=8)
        ax.set(title=f"N = {n} shots", ylim=(0, 1.05))
    axes[0][0].set_ylabel("test F1 (mean ± 95% CI)")
    axes[0][-1].legend(fontsize=7)
    return save_figure(fig, path)


def compute_table(data: SuiteData) -> pd.DataFrame:
    """Per variant: trials, trial hours (wall clock of the child runs) and GPU-hours (when GPUs are logged)."""
    rows = []
    gpus_default = None
    for key in GPU_KEYS:
        if key in data.parent_params:
            try:
                gpus_default = float(data.parent_params[key])
            except ValueError:
                pass
    for t in data.trials:
        gpus = t.gpus if t.gpus is not None else gpus_default
        rows.append({"variant": t.grid("variant"), "hours": t.hours,
                     "gpu_hours": t.hours * gpus if gpus is not None else math.nan,
                     "gpus_known": gpus is not None})
    if not rows:
        return pd.DataFrame(columns=["variant", "trials", "hours", "gpu_hours"])
    frame = pd.DataFrame(rows)
    out = frame.groupby("variant", sort=True).agg(trials=("hours", "size"), hours=("hours", "sum"),
                                                  gpu_hours=("gpu_hours", "sum"), known=("gpus_known", "all"))
    out.loc[~out["known"], "gpu_hours"] = math.nan
    return out.drop(columns="known").reset_index()


def with_total(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`compute_table` and a ``total`` row (GPU-hours unknown unless known for every variant)."""
    total = {"variant": "total", "trials": table["trials"].sum(), "hours": table["hours"].sum(),
             "gpu_hours": table["gpu_hours"].sum(skipna=False)}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def compute_metrics(table: pd.DataFrame) -> dict[str, float]:
    """:func:`compute_table` as parent-run metrics ``trial_hours/<variant>`` and ``gpu_hours/<variant>`` (where
    the GPUs are known), each with its ``/total``."""
    if table.empty:
        return {}
    metrics = {}
    for row in with_total(table).itertuples(index=False):
        metrics[f"trial_hours/{row.variant}"] = row.hours
        if not math.isnan(row.gpu_hours):
            metrics[f"gpu_hours/{row.variant}"] = row.gpu_hours
    return metrics


def compute_figure(table: pd.DataFrame, path: str | Path) -> Path:
    import matplotlib.pyplot as plt

    from sasi.plots import save_figure

    gpu = table["gpu_hours"].notna().all() and (table["gpu_hours"] > 0).any()
    column, label = ("gpu_hours", "GPU-hours") if gpu else ("hours", "trial hours (wall clock)")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(table) + 2), 3.4), dpi=100)
    ax.bar([str(v) for v in table["variant"]], table[column], color="tab:green")
    ax.set(ylabel=label, title=f"{label} per variant")
    ax.tick_params(axis="x", labelsize=8)
    return save_figure(fig, path)


# ---- rendering ------------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 3, spec: str = "f") -> str:
    if value is None or (not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}{spec}}"
    return str(value)


def _cell(mean: float, ci: float) -> str:
    return _fmt(mean) if pd.isna(ci) else f"{mean:.3f} ± {ci:.3f}"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]

    @classmethod
    def of(cls, frame: pd.DataFrame, digits: int = 4) -> Table:
        """A DataFrame as text: floats to ``digits`` significant digits, ``–`` where missing."""
        return cls([str(c) for c in frame.columns],
                   [[_fmt(v, digits, "g") for v in row] for row in frame.itertuples(index=False)])

    def markdown(self) -> str:
        esc = [[c.replace("|", "\\|") for c in row] for row in self.rows]
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc]) + "\n"

    def html(self, cls: str = "") -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def summary_table(summary: pd.DataFrame, metric: str = "test_f1") -> Table:
    shots = sorted(int(s) for s in summary["shots"].unique())
    cells: dict[str, dict[int, str]] = {}
    for _, row in summary.iterrows():
        cells.setdefault(str(row["variant"]), {})[int(row["shots"])] = _cell(row[f"{metric}_mean"],
                                                                              row[f"{metric}_ci95"])
    return Table(["variant"] + [f"N = {s} shots" for s in shots],
                 [[v] + [row.get(s, "–") for s in shots] for v, row in cells.items()])


def _matcher(trials: list[Trial]):
    """Finds a results row's run: by run ID, by Ray trial ID, else by a (variant, shots, seed) that is unique."""
    from sasi.platform.tracking import TRIAL_TAG

    by_run = {t.run_id: t for t in trials}
    by_trial = {t.tags[TRIAL_TAG]: t for t in trials if t.tags.get(TRIAL_TAG)}
    by_grid: dict[tuple, list[Trial]] = {}
    for t in trials:
        by_grid.setdefault((str(t.grid("variant")), _num(t.grid("shots")), _num(t.grid("seed"))), []).append(t)

    def find(row) -> Trial | None:
        found = by_run.get(row.get("run_id")) or by_trial.get(row.get("trial_id"))
        if found is None:
            same = by_grid.get((str(row.get("variant")), _num(row.get("shots")), _num(row.get("seed"))), [])
            found = same[0] if len(same) == 1 else None
        return found
    return find


def trials_table(data: SuiteData) -> Table:
    find = _matcher(data.trials)
    metrics = [m for m in ("test_f1", "test_precision", "test_recall", "test_macro_f1", "val_f1", "test_picks")
               if m in data.results.columns]
    header = ["run", "variant", "shots", "seed", "status"] + metrics + ["iterations", "minutes"]
    rows = []
    for _, r in data.results.iterrows():
        t = find(r)
        status = t.status if t else ("FAILED" if str(r.get("error") or "") else "–")
        rows.append([t.name if t else "–", str(r.get("variant")), _fmt(r.get("shots")), _fmt(r.get("seed")),
                     status] + [_fmt(r.get(m), 0 if m == "test_picks" else 3) for m in metrics] +
                    [_fmt(r.get("iteration"), 0), _fmt(t.hours * 60 if t else math.nan, 1)])
    return Table(header, rows)


@dataclass
class Figure:
    key: str  # file name stem
    title: str
    png: bytes


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
     color:#1d2733;padding:0 1rem}
h1{font-size:1.6rem}h2{border-bottom:1px solid #d8dee4;padding-bottom:.3rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f5f7}
.meta td,.meta th{text-align:left}
.figs{display:flex;flex-wrap:wrap;gap:.8rem 1.2rem;align-items:flex-start}
figure{margin:.4rem 0;max-width:100%}
figure img{max-width:100%;max-height:460px;border:1px solid #e1e4e8;display:block}
figcaption{font-size:.85rem;color:#57606a}
.trial{margin-top:1.5rem}.note{color:#8a5a00}
"""


@dataclass
class Report:
    title: str
    meta: list[tuple[str, str]]
    notes: list[str]
    sections: list[tuple[str, list[Table | Figure | str]]]

    def figures(self) -> list[Figure]:
        return [item for _, items in self.sections for item in items if isinstance(item, Figure)]

    def html(self) -> str:
        parts = [f"<h1>{html.escape(self.title)}</h1>",
                 Table(["", ""], [[k, v] for k, v in self.meta]).html("meta").replace(
                     "<thead><tr><th></th><th></th></tr></thead>", "")]
        parts += [f'<p class="note">{html.escape(n)}</p>' for n in self.notes]
        for heading, items in self.sections:
            sid = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
            parts.append(f'<section id="{sid}"><h2>{html.escape(heading)}</h2>')
            in_figs = False
            for item in items:
                if isinstance(item, Figure) != in_figs:
                    parts.append('<div class="figs">' if not in_figs else "</div>")
                    in_figs = not in_figs
                if isinstance(item, Table):
                    parts.append(item.html())
                elif isinstance(item, Figure):
                    parts.append(f'<figure><img alt="{html.escape(item.title)}" data-figure="{item.key}" '
                                 f'src="{_data_uri(item.png)}"><figcaption>{html.escape(item.title)}'
                                 f'</figcaption></figure>')
                elif item.startswith("### "):
                    parts.append(f'<h3 class="trial">{html.escape(item[4:])}</h3>')
                else:
                    parts.append(f"<p>{html.escape(item)}</p>")
            parts.append("</div></section>" if in_figs else "</section>")
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}'
                f'</title><meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<style>{CSS}</style></head><body>{"".join(parts)}</body></html>\n')

    def markdown(self, figure_dir: str = "figures") -> str:
        lines = [f"# {self.title}", ""]
        lines += [f"- **{k}**: {v}" for k, v in self.meta] + [""]
        lines += [f"> {n}" for n in self.notes] + ([""] if self.notes else [])
        for heading, items in self.sections:
            lines += [f"## {heading}", ""]
            for item in items:
                if isinstance(item, Table):
                    lines.append(item.markdown())
                elif isinstance(item, Figure):
                    lines += [f"![{item.title}]({figure_dir}/{item.key}.png)", ""]
                else:
                    lines += [item, ""]
        return "\n".join(lines).rstrip() + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "run"


def build(data: SuiteData, metric: str = "test_f1") -> Report:
    """Tables and figures of a suite, in report order."""
    from sasi.platform import summary
    from sasi.platform.figures import f1_vs_shots, per_class_f1

    results = data.results
    meta = [("suite", data.name), ("source", data.source)]
    if data.tracking_uri:
        meta.append(("MLflow", data.tracking_uri))
    if data.parent_id:
        meta.append(("parent run", f"{data.parent_id} ({data.parent_status})"))
    for key, label in (("kind", "kind"), ("recipe", "recipe"), ("git_sha", "git SHA"), ("version.sasi", "sasi")):
        if data.parent_tags.get(key):
            meta.append((label, data.parent_tags[key]))
    if data.started:
        meta.append(("started", _dt.datetime.fromtimestamp(data.started / 1000).isoformat(timespec="seconds")))
    meta.append(("trials", str(len(results))))
    meta.append(("report written", _dt.datetime.now().isoformat(timespec="seconds")))
    sections: list[tuple[str, list]] = []
    search = data.parent_tags.get("kind") == "search"  # its trials differ in parameters, not in seeds
    gridded = (not search and set(GRID) <= set(results.columns) and metric in results.columns
               and results["shots"].notna().any() and results["variant"].notna().any())
    if gridded and results[metric].notna().any():
        table = summary.summarise(results, metric)
        sections.append((f"{metric} (mean ± 95% CI over seeds)", [
            summary_table(table, metric),
            Figure("f1_vs_shots", f"{metric} against shots per class (mean ± 95% CI)",
                   _png_of(lambda path: f1_vs_shots(table, path, metric))),
        ]))
        per_class = per_class_table(results)
        if not per_class.empty:
            sections[-1][1].append(Figure("per_class_f1", "test F1 per class (mean ± 95% CI over seeds)",
                                          _png_of(lambda path: per_class_figure(per_class, path))))
    elif gridded:
        sections.append((f"{metric} (mean ± 95% CI over seeds)", [f"No trial reported {metric}."]))
    if data.images:
        sections.append(("Search parameters", [Figure(Path(k).stem, title, data.images[k])
                                               for k, title in SEARCH_PNGS.items() if k in data.images]))
    compute = compute_table(data)
    if not compute.empty:
        rows = [[str(r.variant), str(int(r.trials)), _fmt(r.hours, 3), _fmt(r.gpu_hours, 3)]
                for r in (with_total(compute) if len(compute) > 1 else compute).itertuples(index=False)]
        items: list = [Table(["variant", "trials", "trial hours", "GPU-hours"], rows)]
        if compute["gpu_hours"].isna().any():
            items.append("GPU-hours: '–' where the runs do not record how many GPUs a trial held "
                         f"(tag or param {GPU_KEYS[0]!r}).")
        items.append(Figure("compute", "compute per variant", _png_of(lambda path: compute_figure(compute, path))))
        sections.append(("Compute per variant", items))
    sections.append(("Trials", [trials_table(data)]))
    per_trial: list = []
    used: set[str] = set()
    for t in data.trials:
        scores = {k.split(".", 1)[1]: v for k, v in t.metrics.items() if k.startswith("test_f1.")}
        if "per_class_f1.png" not in t.images and scores:
            t.images["per_class_f1.png"] = _png_of(
                lambda path, s=scores, t=t: per_class_f1(s, path, title=t.name, overall=t.metrics.get("test_f1")))
        if not t.images:
            continue
        per_trial.append(f"### {t.name}")
        shown = ", ".join(f"{k} {_fmt(t.metrics[k])}" for k in ("test_f1", "test_precision", "test_recall")
                          if k in t.metrics)
        per_trial.append(f"{t.status} · run {t.run_id}" + (f" · {shown}" if shown else ""))
        captions = {"training_curves.png": "training curves", "slice.png": "slice: true particles outlined, x picks",
                    "per_class_f1.png": "F1 per class"}
        stem = _slug(t.name) if _slug(t.name) not in used else f"{_slug(t.name)}-{t.run_id[:8]}"
        used.add(stem)
        for file in TRIAL_PNGS:
            if file in t.images:
                per_trial.append(Figure(f"{stem}__{Path(file).stem}", f"{t.name}: {captions[file]}", t.images[file]))
    if per_trial:
        sections.append(("Runs", per_trial))
    return Report(f"sasi suite report: {data.name}", meta, data.notes, sections)


def write(report: Report, out: str | Path) -> dict[str, Path]:
    """``out/report.html`` (self-contained), ``out/report.md`` and ``out/figures/*.png`` (for the Markdown)."""
    out = Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for figure in report.figures():
        (out / "figures" / f"{figure.key}.png").write_bytes(figure.png)
    paths = {"html": out / "report.html", "markdown": out / "report.md", "figures": out / "figures"}
    paths["html"].write_text(report.html(), encoding="utf-8")
    paths["markdown"].write_text(report.markdown(), encoding="utf-8")
    return paths


def attach(data: SuiteData, paths: dict[str, Path]) -> str:
    """Log the report to the suite's MLflow parent run (``report/report.html``, which MLflow previews)."""
    from sasi.platform import tracking

    if not data.parent_id or not data.tracking_uri:
        raise SasiError("no MLflow parent run to attach the report to (the report was built from files)")
    tracking.log_artifacts(data.tracking_uri, data.parent_id, [paths["html"], paths["markdown"]], folder="report")
    return data.parent_id


def publish(parent_run_id: str, tracking_uri: str, out: str | Path) -> dict[str, Path]:
    """For the end of a suite: write its report to ``out``, attach it to the parent run, and log compute
    per variant there as metrics (:func:`compute_metrics`)."""
    from sasi.platform import tracking

    data = load(parent_run_id, tracking_uri)
    paths = write(build(data), out)
    attach(data, paths)
    tracking.log_metrics(tracking_uri, parent_run_id, compute_metrics(compute_table(data)))
    return paths


def publish_quietly(parent_run_id: str, tracking_uri: str, storage: str, name: str) -> Path | None:
    """:func:`publish` into ``<storage>/<name>/report`` (a temporary folder for remote storage); returns
    ``report.html``, or ``None`` after a one-line warning: a report never fails the suite."""
    from sasi.platform.tracking import best_effort, is_remote

    if not is_remote(storage):
        paths = best_effort("suite report", publish, parent_run_id, tracking_uri, Path(storage) / name / "report")
        return paths["html"] if paths else None
    with tempfile.TemporaryDirectory() as tmp:
        best_effort("suite report", publish, parent_run_id, tracking_uri, tmp)
    return None


def make_report(target: str | os.PathLike, out: str | Path | None = None, tracking_uri: str | None = None,
                suite: str | None = None) -> tuple[SuiteData, dict[str, Path]]:
    """Load, build and write a suite report (default folder: ``report-<suite>`` in the working directory)."""
    data = load(target, tracking_uri, suite)
    return data, write(build(data), out or Path(f"report-{_slug(data.name)}"))
