"""Suite results: mean ± 95% confidence interval (t-distribution) per variant and shot count."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rich.table import Table


def ci95(values: pd.Series) -> float:
    """Half-width of the 95% t-interval of the mean (NaN with fewer than two values)."""
    from scipy import stats

    values = values.dropna()
    n = len(values)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))


COMPANION = {"test_class_f1": "test_localisation_f1"}  # shown beside the headline metric in every table


def summarise(results: pd.DataFrame, metric: str = "test_class_f1") -> pd.DataFrame:
    """One row per (variant, shots): n, mean, std and CI half-width of ``metric`` (and of its companion)."""
    out = None
    for name in (metric, COMPANION.get(metric)):
        if name is None or (name != metric and name not in results):
            continue
        grouped = results.groupby(["variant", "shots"], sort=True)[name]
        part = grouped.agg(n="count", mean="mean", std="std").reset_index()
        part["ci95"] = grouped.apply(ci95).to_numpy()
        part = part.rename(columns={c: f"{name}_{c}" for c in ("mean", "std", "ci95")})
        out = part if out is None else out.merge(part.drop(columns="n"), on=["variant", "shots"])
    return out


def _cell(mean: float, ci: float) -> str:
    return f"{mean:.3f}" if math.isnan(ci) else f"{mean:.3f} ± {ci:.3f}"


def _pivot(summary: pd.DataFrame, metric: str) -> tuple[list[int], dict[str, dict[int, str]]]:
    shots = sorted(int(s) for s in summary["shots"].unique())
    companion = COMPANION.get(metric)
    cells: dict[str, dict[int, str]] = {}
    for row in summary.itertuples(index=False):
        d = row._asdict()
        cell = _cell(d[f"{metric}_mean"], d[f"{metric}_ci95"])
        if f"{companion}_mean" in d:
            cell += f" (loc. {_cell(d[f'{companion}_mean'], d[f'{companion}_ci95'])})"
        cells.setdefault(str(d["variant"]), {})[int(d["shots"])] = cell
    return shots, cells


def markdown(summary: pd.DataFrame, metric: str = "test_class_f1") -> str:
    """Variants × shots table of ``mean ± CI``."""
    shots, cells = _pivot(summary, metric)
    lines = ["| variant | " + " | ".join(f"{s} shots" for s in shots) + " |",
             "|---|" + "---|" * len(shots)]
    for variant, row in cells.items():
        lines.append(f"| {variant} | " + " | ".join(row.get(s, "–") for s in shots) + " |")
    return "\n".join(lines) + "\n"


def rich_table(summary: pd.DataFrame, metric: str = "test_class_f1", title: str = "") -> Table:
    shots, cells = _pivot(summary, metric)
    table = Table(title=title or f"{metric} (mean ± 95% CI)")
    table.add_column("variant")
    for s in shots:
        table.add_column(f"{s} shots", justify="right")
    for variant, row in cells.items():
        table.add_row(variant, *(row.get(s, "–") for s in shots))
    return table


def write(results: pd.DataFrame, summary: pd.DataFrame, folder: str | Path, metric: str = "test_class_f1") -> list[Path]:
    """``results.parquet`` (one row per trial), ``summary.parquet`` and ``summary.md``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "results.parquet", folder / "summary.parquet", folder / "summary.md"]
    results.to_parquet(paths[0], index=False)
    summary.to_parquet(paths[1], index=False)
    paths[2].write_text(markdown(summary, metric))
    return paths
