"""The core (``sasi`` outside ``sasi.platform``) stands on its own: it never imports the platform, Ray, MLflow
or Optuna, and simulate → train → predict → evaluate runs on CPU with those three impossible to import."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sasi"
FORBIDDEN = ("sasi.platform", "ray", "mlflow", "optuna")
# the CLI may reach into the platform (lazily, inside the commands that need it); it is not the core
OUTSIDE_CORE = ("platform", "cli.py", "cli_predict.py", "cli_tune.py", "__main__.py")


def core_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in OUTSIDE_CORE)


def imported_modules(source: str, module: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, at any depth; ``module`` resolves relative ones."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[:-node.level]
                base = ".".join(anchor + ([base] if base else []))
            yield from ((node.lineno, f"{base}.{alias.name}" if base else alias.name) for alias in node.names)


def upward_imports(source: str, module: str) -> list[str]:
    return [f"line {line}: {name}" for line, name in imported_modules(source, module)
            if any(name == f or name.startswith(f"{f}.") for f in FORBIDDEN)]


def test_the_scanner_finds_lazy_and_relative_imports():
    source = textwrap.dedent("""
        import numpy
        from sasi.config import to_dict
        def later():
            import ray.train
            from .. import platform
            from ..platform.tracking import log_params
            from mlflow import MlflowClient
        """)
    assert upward_imports(source, "sasi.method.infill") == [
        "line 5: ray.train", "line 6: sasi.platform", "line 7: sasi.platform.tracking.log_params",
        "line 8: mlflow.MlflowClient"]


def test_core_never_imports_the_platform_ray_mlflow_or_optuna():
    files = core_files()
    assert len(files) > 20, files  # the scan sees the core
    found = []
    for path in files:
        relative = path.relative_to(PACKAGE.parent)
        found += [f"{relative} {hit}" for hit in upward_imports(path.read_text(), ".".join(relative.with_suffix("").parts))]
    assert not found, "the core imports upward:\n" + "\n".join(found)


# Runs in a fresh interpreter: a meta-path finder makes ray, mlflow and optuna unimportable (as if not installed),
# then the CLI runs the whole core path in-process (train with --workers 0).
PIPELINE = """
import importlib.abc, json, sys
from pathlib import Path

BLOCKED = {"ray", "mlflow", "optuna"}

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: the core must run without it")
        return None

sys.meta_path.insert(0, Blocked())

from sasi.cli import app

def sasi(*args):
    app([str(a) for a in args], standalone_mode=False)

work = Path(sys.argv[1])
data, runs = work / "data", work / "runs"
sasi("simulate", data, "--tomograms", 1, "--shape", 32, 96, 96, "--snr", 2.0, "--density", 0.2, "--seed", 1)
(work / "config.yaml").write_text(json.dumps({
    "name": "no-ray",
    "data": {"dataset": str(data), "shots": 2, "patch": 16},
    "model": {"channels": [8, 12, 16]},
    "train": {"iterations": 4, "eval_every": 0, "batch_size": 2, "device": "cpu"},
}))
sasi("train", work / "config.yaml", "--workers", 0, "--storage", runs)
checkpoint = sorted((runs / "no-ray").glob("checkpoint_*"))[-1]
tomogram = work / "train_00.mrc"  # predict names picks after the file; evaluate matches them to the dataset
tomogram.write_bytes((data / "train_00" / "tomogram.mrc").read_bytes())
sasi("predict", checkpoint, tomogram, "--out", work / "picks.parquet", "--device", "cpu")
sasi("evaluate", "--pred", work / "picks.parquet", "--dataset", data, "--split", "train",
     "--json", work / "scores.json")
"""


def test_simulate_train_predict_evaluate_without_ray_mlflow_optuna(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SASI_STORAGE")}
    done = subprocess.run([sys.executable, "-c", PIPELINE, str(tmp_path)], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(PACKAGE.parent)}, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "picks.parquet").is_file()
    assert json.loads((tmp_path / "scores.json").read_text())  # scored (the fields are evaluate's business)
