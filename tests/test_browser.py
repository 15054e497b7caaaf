"""Browsing results in a real browser: Debian's headless Chromium against `sasi ui` and `sasi report`.

The store is built the way ``sasi ablate`` logs a suite (tests/_suite_store.py: tracking helpers and real
MLflow client calls, one parent + two child runs with params, stepped metrics, tags and PNG artifacts),
served by a real ``mlflow ui`` started through ``sasi ui``. Chromium is driven by Playwright's Python
package with ``executable_path=/usr/bin/chromium`` (Playwright never downloads a browser here).

What it needs, and where CI gets it (``.ci/run``):
- ``/usr/bin/chromium`` (Debian packages ``chromium``; ``$SASI_CHROMIUM`` overrides the path);
- full ``mlflow`` (the ``ui`` extra) and ``playwright``: from this environment if it has them, else from the
  browser-test venv ``$SASI_BROWSER_VENV`` (default /tmp/sasi-browser-venv) holding
  ``mlflow>=3.17,<3.18 optuna-dashboard playwright``. A separate venv because full mlflow 3.17 pins
  ``pyarrow<26`` and the main environment runs pyarrow 26.
Each is skipped with the reason when missing. Screenshots land in the test's tmp dir, and are copied to
``$SASI_TEST_ARTIFACTS`` when it is set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from _helpers import free_port
from _suite_store import build_suite_store

TESTS = Path(__file__).resolve().parent
CHROMIUM = Path(os.environ.get("SASI_CHROMIUM", "/usr/bin/chromium"))
BROWSER_VENV = Path(os.environ.get("SASI_BROWSER_VENV", "/tmp/sasi-browser-venv"))
pytestmark = pytest.mark.timeout(300)


def _imports(python: Path | str, code: str) -> bool:
    try:
        return subprocess.run([str(python), "-c", code], capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _venv_python() -> Path:
    return BROWSER_VENV / "bin" / "python"


@pytest.fixture(scope="module")
def chromium() -> str:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def driver_python() -> str:
    """A Python with Playwright: this one, else the browser-test venv's."""
    for python in (sys.executable, _venv_python()):
        if Path(python).exists() and _imports(python, "import playwright.sync_api"):
            return str(python)
    pytest.skip(f"Playwright is neither in this environment nor in {BROWSER_VENV} (see .ci/run)")


@pytest.fixture(scope="module")
def ui_env() -> str | None:
    """None when this environment has full mlflow, else the browser-test venv that has it."""
    from sasi.platform.ui import full_mlflow_here

    if full_mlflow_here():
        return None
    if (BROWSER_VENV / "bin" / "mlflow").is_file() and _imports(_venv_python(), "import mlflow.server, flask"):
        return str(BROWSER_VENV)
    pytest.skip(f"full mlflow (the ui extra) is neither in this environment nor in {BROWSER_VENV} (see .ci/run)")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    yield folder
    target = os.environ.get("SASI_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            shutil.copy2(png, Path(target) / png.name)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_suite_store(tmp_path_factory.mktemp("browse") / "storage")



def _sasi(*args: str) -> list[str]:
    return [sys.executable, "-c", "from sasi.cli import main; main()", *args]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`sasi ui` exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout:.0f} s: {log.read_text()[-3000:]}")


def _serve(args: list[str], probe: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """Start ``sasi ui ...`` (output to a log file) and wait until ``probe`` answers."""
    log = tmp_path / "ui.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(_sasi("ui", *args), stdout=handle, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_http(probe, proc, log, 150)
    except BaseException:
        _stop(proc)
        raise
    return proc, log


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to `sasi ui`, which stops its server's process group on the way out."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drive(python: str, mode: str, spec: dict, timeout: float = 180) -> dict:
    out = subprocess.run([python, str(TESTS / "_browser_driver.py"), mode, json.dumps(spec)], capture_output=True,
                         text=True, timeout=timeout, check=False)
    assert out.returncode == 0, f"browser driver ({mode}) failed:\n{out.stdout[-2000:]}\n{out.stderr[-6000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def _png_size(data: bytes) -> list[int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return [int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")]


def test_mlflow_ui_shows_suite_runs_and_artifacts(chromium, driver_python, ui_env, store, screenshots, tmp_path):
    """`sasi ui` serves the suite's store; the experiment lists parent and children; PNG artifacts load."""
    port = free_port()
    args = ["--storage", str(store.storage), "--port", str(port)] + (["--ui-env", ui_env] if ui_env else [])
    t0 = time.monotonic()
    proc, log = _serve(args, f"http://127.0.0.1:{port}/health", tmp_path)
    started = time.monotonic() - t0
    try:
        children = sorted(store.children)
        child_png = (store.storage / "mlartifacts" / store.children[children[0]] / "artifacts" / "slice.png")
        parent_png = (store.storage / "mlartifacts" / store.parent_id / "artifacts" / "f1_vs_shots.png")
        seen = _drive(driver_python, "mlflow", {
            "chromium": chromium, "url": f"http://127.0.0.1:{port}", "experiment_id": store.experiment_id,
            "parent": store.name, "parent_run_id": store.parent_id, "children": children,
            "child_run_id": store.children[children[0]], "child_metric": "test_class_f1", "child_png": "slice.png",
            "parent_png": "f1_vs_shots.png", "screenshots": str(screenshots)})
    finally:
        _stop(proc)
    text = log.read_text()
    assert f"http://127.0.0.1:{port}" in text and "is up" in text, text[-2000:]
    assert proc.returncode == 0
    with pytest.raises(OSError):  # the server went down with `sasi ui`
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    assert seen["parent_listed"] and seen["children_listed"] == children
    assert children == [f"browse/{v}/N=3/seed=0" for v in ("sasi", "supervised-only")]
    assert store.children[children[0]] in seen["child_page"]["url"]
    assert _png_size(child_png.read_bytes()) in seen["child_artifact"]["sizes"]
    assert _png_size(parent_png.read_bytes()) in seen["parent_artifact"]["sizes"]
    assert not seen["server_errors"]
    for name in ("mlflow-experiment", "mlflow-runs", "mlflow-child-run", "mlflow-child-artifact",
                 "mlflow-parent-artifact"):
        assert (screenshots / f"{name}.png").stat().st_size > 5000
    print(f"mlflow ui up in {started:.1f} s; browser steps {seen['steps']}")


def test_report_renders_in_browser(chromium, driver_python, store, screenshots, tmp_path):
    """`sasi report STORAGE` writes one HTML file whose plots all render from embedded data."""
    out = tmp_path / "report"
    done = subprocess.run(_sasi("report", str(store.storage), "--out", str(out)), capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    html_file = out / "report.html"
    assert "report.html" in done.stdout and html_file.is_file()
    # self-contained: open a copy with no figures folder beside it
    alone = tmp_path / "alone" / "report.html"
    alone.parent.mkdir()
    shutil.copy2(html_file, alone)
    seen = _drive(driver_python, "report", {"chromium": chromium, "file": str(alone), "screenshots": str(screenshots)})
    assert seen["h1"] == "sasi suite report: browse"
    assert seen["sections"][:4] == ["test_class_f1 (mean ± 95% CI over seeds)", "Compute per variant", "Trials", "Runs"]
    figures = {img["figure"]: img for img in seen["images"]}
    expected = {"f1_vs_shots", "per_class_f1", "compute"} | {
        f"browse_{v}_N=3_seed=0__{kind}" for v in ("sasi", "supervised-only")
        for kind in ("training_curves", "slice", "per_class_f1")}
    assert expected <= set(figures), sorted(figures)
    assert all(img["loaded"] and img["inline"] and img["width"] > 200 for img in seen["images"]), seen["images"]
    assert seen["external_requests"] == []
    for name in ("browse/sasi/N=3/seed=0", "browse/supervised-only/N=3/seed=0", "0.450", "0.550", "GPU-hours"):
        assert name in seen["body_text"]
    assert seen["tables"] >= 4
    assert (screenshots / "report-full.png").stat().st_size > 20000


def test_optuna_dashboard_shows_mirrored_study(chromium, driver_python, ui_env, screenshots, tmp_path):
    """`sasi ui --optuna` serves <storage>/<search>-optuna.db (as the Tune mirror writes it) with optuna-dashboard."""
    import optuna

    if ui_env is None and not _imports(sys.executable, "import optuna_dashboard"):
        pytest.skip("optuna-dashboard is not installed here")
    if ui_env and not (Path(ui_env) / "bin" / "optuna-dashboard").is_file():
        pytest.skip(f"optuna-dashboard is not in {ui_env}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/lr-search-optuna.db", study_name="lr-search",
                                direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    for value, f1 in ((1e-3, 0.4), (3e-3, 0.55)):
        study.add_trial(optuna.trial.create_trial(params={"train.lr": value}, distributions={"train.lr": lr},
                                                  value=f1))
    port = free_port()
    args = ["--optuna", "--storage", str(tmp_path), "--port", str(port)] + (["--ui-env", ui_env] if ui_env else [])
    proc, log = _serve(args, f"http://127.0.0.1:{port}/", tmp_path)
    try:
        seen = _drive(driver_python, "optuna", {"chromium": chromium, "url": f"http://127.0.0.1:{port}/",
                                                "study": "lr-search", "screenshots": str(screenshots)})
    finally:
        _stop(proc)
    assert seen["study_listed"] and "/studies/" in seen["study_url"]
    assert "Best Trial" in seen["body_text"] and "train.lr" in seen["body_text"]
    assert (screenshots / "optuna-study.png").stat().st_size > 5000
    assert re.search(r"optuna-dashboard .*lr-search-optuna\.db", log.read_text())
