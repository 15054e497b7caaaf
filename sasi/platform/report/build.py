"""A suite's :class:`Report`: metadata, score summary, search figures, compute, trials and per-run pictures."""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import pandas as pd

from sasi.platform import summary
from sasi.platform.figures import f1_vs_shots, per_class_f1
from sasi.platform.report.data import GPU_KEYS, GRID, SEARCH_PNGS, TRIAL_PNGS, SuiteData, Trial, as_number
from sasi.platform.report.figures import compute_figure, per_class_figure, png_of
from sasi.platform.report.render import Figure, Item, Report, Table, fmt, mean_ci, slug
from sasi.platform.report.tables import compute_table, per_class_table, with_total
from sasi.platform.tracking import TRIAL_TAG

CAPTIONS = {"training_curves.png": "training curves", "slice.png": "slice: true particles outlined, x picks",
            "per_class_f1.png": "F1 per class"}
TRIAL_METRICS = ("test_class_f1", "test_localisation_f1", "test_precision", "test_recall", "test_duplicate_fraction",
                 "test_picks_per_truth", "val_class_f1", "test_picks")


def summary_table(table: pd.DataFrame, metric: str = "test_class_f1") -> Table:
    """Variants × shot counts, each cell ``mean ± CI`` of ``metric`` (from :func:`summary.summarise`)."""
    shots = sorted(int(s) for s in table["shots"].unique())
    cells: dict[str, dict[int, str]] = {}
    for _, row in table.iterrows():
        cells.setdefault(str(row["variant"]), {})[int(row["shots"])] = mean_ci(row[f"{metric}_mean"],
                                                                               row[f"{metric}_ci95"])
    return Table(["variant"] + [f"N = {s} shots" for s in shots],
                 [[v] + [row.get(s, "–") for s in shots] for v, row in cells.items()])


def _matcher(trials: list[Trial]):
    """Finds a results row's run: by run ID, by Ray trial ID, else by a (variant, shots, seed) that is unique."""
    by_run = {t.run_id: t for t in trials}
    by_trial = {t.tags[TRIAL_TAG]: t for t in trials if t.tags.get(TRIAL_TAG)}
    by_grid: dict[tuple, list[Trial]] = {}
    for t in trials:
        by_grid.setdefault(t.grid_key(), []).append(t)

    def find(row) -> Trial | None:
        found = by_run.get(row.get("run_id")) or by_trial.get(row.get("trial_id"))
        if found is None:
            same = by_grid.get((str(row.get("variant")), as_number(row.get("shots")), as_number(row.get("seed"))), [])
            found = same[0] if len(same) == 1 else None
        return found
    return find


def trials_table(data: SuiteData) -> Table:
    """One row per trial: its run, grid cell, status, scores, iterations and minutes."""
    find = _matcher(data.trials)
    metrics = [m for m in TRIAL_METRICS if m in data.results.columns]
    header = ["run", "variant", "shots", "seed", "status"] + metrics + ["iterations", "minutes"]
    rows = []
    for _, r in data.results.iterrows():
        t = find(r)
        status = t.status if t else ("FAILED" if str(r.get("error") or "") else "–")
        rows.append([t.name if t else "–", str(r.get("variant")), fmt(r.get("shots")), fmt(r.get("seed")),
                     status] + [fmt(r.get(m), 0 if m == "test_picks" else 3) for m in metrics] +
                    [fmt(r.get("iteration"), 0), fmt(t.hours * 60 if t else math.nan, 1)])
    return Table(header, rows)


def _meta(data: SuiteData) -> list[tuple[str, str]]:
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
    meta.append(("trials", str(len(data.results))))
    meta.append(("report written", _dt.datetime.now().isoformat(timespec="seconds")))
    return meta


def _score_items(data: SuiteData, metric: str) -> list[Item] | None:
    """Summary table and F1-vs-shots (and per-class) figures of an ablation grid; ``None`` for a search."""
    results = data.results
    search = data.parent_tags.get("kind") == "search"  # its trials differ in parameters, not in seeds
    gridded = (not search and set(GRID) <= set(results.columns) and metric in results.columns
               and results["shots"].notna().any() and results["variant"].notna().any())
    if not gridded:
        return None
    if not results[metric].notna().any():
        return [f"No trial reported {metric}."]
    table = summary.summarise(results, metric)
    items: list[Item] = [summary_table(table, metric),
                         Figure("f1_vs_shots", f"{metric} against shots per class (mean ± 95% CI)",
                                png_of(f1_vs_shots, table, metric=metric))]
    per_class = per_class_table(results)
    if not per_class.empty:
        items.append(Figure("per_class_f1", "test F1 per class (mean ± 95% CI over seeds)",
                            png_of(per_class_figure, per_class)))
    return items


def _search_items(search: dict) -> list[Item]:
    """Per study (method × shots): best configuration, best val F1, test F1 ± CI and the paired gain against the
    baseline on the confirmation seeds, and the top parameter importances."""
    from sasi.platform.confirm import summary_frame

    seeds = search.get("confirm_seeds") or []
    note = (f"test F1 ± 95% CI over confirmation seeds {seeds} (test tomograms); paired gain = mean over the same "
            f"seeds and labelled particles of {search['name']} − {search.get('baseline') or 'baseline'}"
            if seeds else "not confirmed on the test tomograms (sasi tune --confirm K)")
    return [note, Table.of(summary_frame(search), digits=3)]


def _compute_items(data: SuiteData) -> list[Item]:
    compute = compute_table(data)
    if compute.empty:
        return []
    rows = [[str(r.variant), str(int(r.trials)), fmt(r.hours, 3), fmt(r.gpu_hours, 3)]
            for r in (with_total(compute) if len(compute) > 1 else compute).itertuples(index=False)]
    items: list[Item] = [Table(["variant", "trials", "trial hours", "GPU-hours"], rows)]
    if compute["gpu_hours"].isna().any():
        items.append("GPU-hours: '–' where the runs do not record how many GPUs a trial held "
                     f"(tag or param {GPU_KEYS[0]!r}).")
    items.append(Figure("compute", "compute per variant", png_of(compute_figure, compute)))
    return items


def _run_items(trials: list[Trial]) -> list[Item]:
    """Per trial with pictures: a heading, its status and scores, and its figures (per-class F1 drawn if missing)."""
    items: list[Item] = []
    used: set[str] = set()
    for t in trials:
        scores = {k.split(".", 1)[1]: v for k, v in t.metrics.items() if k.startswith("test_class_f1.")}
        if "per_class_f1.png" not in t.images and scores:
            t.images["per_class_f1.png"] = png_of(per_class_f1, scores, title=t.name,
                                                  overall=t.metrics.get("test_class_f1"))
        if not t.images:
            continue
        items.append(f"### {t.name}")
        shown = ", ".join(f"{k} {fmt(t.metrics[k])}" for k in ("test_class_f1", "test_precision", "test_recall")
                          if k in t.metrics)
        items.append(f"{t.status} · run {t.run_id}" + (f" · {shown}" if shown else ""))
        stem = slug(t.name) if slug(t.name) not in used else f"{slug(t.name)}-{t.run_id[:8]}"
        used.add(stem)
        for file in TRIAL_PNGS:
            if file in t.images:
                items.append(Figure(f"{stem}__{Path(file).stem}", f"{t.name}: {CAPTIONS[file]}", t.images[file]))
    return items


def build(data: SuiteData, metric: str = "test_class_f1") -> Report:
    """Tables and figures of a suite, in report order."""
    sections: list[tuple[str, list[Item]]] = []
    scores = _score_items(data, metric)
    if scores is not None:
        sections.append((f"{metric} (mean ± 95% CI over seeds)", scores))
    if data.search:
        sections.append(("Search per shot count", _search_items(data.search)))
    if data.images:
        sections.append(("Search parameters", [Figure(Path(k).stem, title, data.images[k])
                                               for k, title in SEARCH_PNGS.items() if k in data.images]))
    if compute := _compute_items(data):
        sections.append(("Compute per variant", compute))
    sections.append(("Trials", [trials_table(data)]))
    if runs := _run_items(data.trials):
        sections.append(("Runs", runs))
    return Report(f"sasi suite report: {data.name}", _meta(data), data.notes, sections)


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
