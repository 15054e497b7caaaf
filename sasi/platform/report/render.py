"""A report as text: tables and embedded figures, rendered to one self-contained HTML page or to Markdown."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

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


def fmt(value: Any, digits: int = 3, spec: str = "f") -> str:
    """A cell: floats to ``digits`` (``spec`` ``f`` or ``g``), ``–`` where missing."""
    if value is None or (not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}{spec}}"
    return str(value)


def mean_ci(mean: float, ci: float) -> str:
    """``mean ± ci`` (just the mean when the CI is unknown)."""
    return fmt(mean) if pd.isna(ci) else f"{mean:.3f} ± {ci:.3f}"


def slug(text: str) -> str:
    """``text`` as a file-name stem."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "run"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]

    @classmethod
    def of(cls, frame: pd.DataFrame, digits: int = 4) -> Table:
        """A DataFrame as text: floats to ``digits`` significant digits, ``–`` where missing."""
        return cls([str(c) for c in frame.columns],
                   [[fmt(v, digits, "g") for v in row] for row in frame.itertuples(index=False)])

    def markdown(self) -> str:
        esc = [[c.replace("|", "\\|") for c in row] for row in self.rows]
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in esc]) + "\n"

    def html(self, cls: str = "") -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
        return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


@dataclass
class Figure:
    key: str  # file name stem
    title: str
    png: bytes

    def html(self) -> str:
        uri = "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")
        return (f'<figure><img alt="{html.escape(self.title)}" data-figure="{self.key}" src="{uri}">'
                f'<figcaption>{html.escape(self.title)}</figcaption></figure>')


Item = Table | Figure | str  # a str is a paragraph, or a sub-heading when it starts with "### "


@dataclass
class Report:
    title: str
    meta: list[tuple[str, str]]
    notes: list[str]
    sections: list[tuple[str, list[Item]]]

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
                if isinstance(item, (Table, Figure)):
                    parts.append(item.html())
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
