"""Helpers shared by the GPU benchmarks: a train-only dataset, the device tag, a table and the JSON file."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

TINY = {"data": {"shots": 2, "patch": 16}, "model": {"channels": [8, 12, 16]}}  # --quick (CPU) model and crops


def train_only_dataset(recipe: str, root: str | Path = "/tmp/sasi-bench") -> str:
    """Simulate (once) just the train tomogram of ``recipe`` under ``root`` (outside the repo).

    With no ``val`` split the training loop skips validation, so its reports time training alone.
    """
    from sasi.simulate import get_recipe, simulate_dataset

    folder = Path(root) / f"{recipe}-train-only"
    if not (folder / "dataset.yaml").exists():
        r = get_recipe(recipe)
        simulate_dataset(folder, r.simulation, {"train": 1}, seed=0, recipe=r.name, progress=False)
    return str(folder)


def device_tag() -> tuple[str, str]:
    """(device name, file tag): ``torch.cuda.get_device_name()`` or ``cpu``; tag lower-case, ``_`` for spaces."""
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return name, name.lower().replace(" ", "_")


def print_table(rows: list[dict], columns: dict[str, str]) -> None:
    """Right-aligned table; ``columns``: row key (the header) → format spec such as ``".2f"``."""
    cells = [[("-" if r.get(k) is None else format(r[k], f)) for k, f in columns.items()] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(columns)]
    for line in [list(columns), *cells]:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))


def write_results(name: str, settings: dict, rows: list[dict], **extra) -> Path:
    """``benchmarks/results/<name>-<device>.json`` with device, torch version, date, settings and rows."""
    import torch

    device, tag = device_tag()
    out = Path(__file__).resolve().parent / "results" / f"{name}-{tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {"device": device, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
            "settings": settings, "rows": rows, **extra}
    out.write_text(json.dumps(body, indent=2))
    return out
