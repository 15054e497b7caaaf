"""Helpers shared by the GPU benchmarks: a train-only dataset, the device tag, a table and the JSON file."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

# Benchmark-only: the polnet 10 Å maps beside the development checkout, passed explicitly (never a sasi default).
TEMPLATES = Path(__file__).resolve().parents[2] / "shared" / "structures" / "polnet-10A"
TINY = {"data": {"shots": 2, "patch": 16}, "model": {"channels": [8, 12, 16]}}  # --quick (CPU) model and crops


def dev_templates() -> str | None:
    """``$SASI_TEMPLATES``, else the development copy of the polnet maps (exported as ``$SASI_TEMPLATES`` so that
    suites simulated by sasi.platform use it too), else None: sasi fetches them."""
    if not os.environ.get("SASI_TEMPLATES") and TEMPLATES.is_dir():
        os.environ["SASI_TEMPLATES"] = str(TEMPLATES)
    return os.environ.get("SASI_TEMPLATES")


def train_only_dataset(recipe: str, root: str | Path = "/tmp/sasi-bench") -> str:
    """Simulate (once) just the train tomogram of ``recipe`` under ``root`` (outside the repo).

    With no ``val`` split the training loop skips validation, so its reports time training alone.
    """
    return _dataset(recipe, root, "train-only", {"train": 1})


def recipe_dataset(recipe: str, root: str | Path = "/tmp/sasi-bench") -> str:
    """Simulate (once) the whole ``recipe`` (train, val and test tomograms) under ``root``."""
    return _dataset(recipe, root, "full", None)


def _dataset(recipe: str, root: str | Path, tag: str, splits: dict[str, int] | None) -> str:
    from sasi.simulate import get_recipe, simulate_dataset
    from sasi.simulate.writer import default_workers

    folder = Path(root) / f"{recipe}-{tag}"
    if not (folder / "dataset.yaml").exists():
        dev_templates()  # exports $SASI_TEMPLATES for recipes built on polnet maps; built-in ones keep theirs
        r = get_recipe(recipe)
        simulate_dataset(folder, r.simulation, splits or r.splits, seed=0, recipe=r.name, progress=False,
                         workers=default_workers())
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


class GpuSampler:
    """``with GpuSampler() as gpu:`` samples ``nvidia-smi`` every 0.5 s (no samples without it).

    ``gpus``: indices as ``nvidia-smi -i`` takes them (default: all). Afterwards ``util_mean`` (% averaged over
    samples and GPUs) and ``mem_max_mib`` (largest memory use of one GPU) summarise what it saw.
    """

    def __init__(self, gpus: str | None = None):
        import threading

        self.samples: list[list[tuple[float, float]]] = []
        self._cmd = ["nvidia-smi", *(["-i", gpus] if gpus else []),
                     "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import subprocess

        while not self._stop.wait(0.5):
            out = subprocess.run(self._cmd, check=False, capture_output=True, text=True).stdout.strip()
            if out:
                self.samples.append([tuple(float(v) for v in line.split(",")) for line in out.splitlines()])

    def __enter__(self) -> GpuSampler:
        import shutil

        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def util_mean(self) -> float | None:
        values = [u for sample in self.samples for u, _ in sample]
        return sum(values) / len(values) if values else None

    @property
    def mem_max_mib(self) -> float | None:
        values = [m for sample in self.samples for _, m in sample]
        return max(values) if values else None
