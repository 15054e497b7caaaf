"""`sasi report` (self-contained HTML + Markdown of a suite) and `sasi ui`'s checks, without a browser.

The browser checks of the same outputs are in tests/test_browser.py.
"""

from __future__ import annotations

import base64
import re
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
from _suite_store import build_suite_store
from typer.testing import CliRunner

from sasi.errors import SasiError

PNG = b"\x89PNG\r\n\x1a\n"
TRIALS = ("browse/sasi/N=3/seed=0", "browse/supervised-only/N=3/seed=0")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_suite_store(tmp_path_factory.mktemp("report") / "storage")


def _images(html: str) -> dict[str, bytes]:
    found = re.findall(r'data-figure="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return {key: base64.b64decode(data) for key, data in found}


def test_report_from_storage_folder(store, tmp_path):
    from sasi.platform.report import make_report

    data, paths = make_report(store.storage, tmp_path / "out")
    assert data.name == "browse" and data.parent_id == store.parent_id and len(data.results) == 2
    assert [t.name for t in data.trials] == list(TRIALS)
    html = paths["html"].read_text()
    images = _images(html)
    assert html.count("<img ") == len(images) >= 3 + 3 * 2  # suite plots + 3 per trial
    assert all(png.startswith(PNG) for png in images.values())
    assert {"f1_vs_shots", "per_class_f1", "compute"} <= set(images)
    for trial in TRIALS:
        slug = trial.replace("/", "_")
        assert {f"{slug}__training_curves", f"{slug}__slice", f"{slug}__per_class_f1"} <= set(images)
        assert trial in html
    # the same numbers as the suite's own summary.md, and the GPU-hours per variant
    assert "0.450" in html and "0.550" in html and "GPU-hours" in html
    assert "src=\"http" not in html and "<script" not in html
    markdown = paths["markdown"].read_text()
    assert markdown.startswith("# sasi suite report: browse")
    assert "| sasi | 0.450 |" in markdown and "| supervised-only | 0.550 |" in markdown
    linked = re.findall(r"\]\((figures/[^)]+\.png)\)", markdown)
    assert len(linked) == len(images) and all((paths["markdown"].parent / f).is_file() for f in linked)


def test_report_from_run_ids(store, tmp_path):
    from sasi.platform.report import load

    child = store.children[TRIALS[0]]
    for run_id in (store.parent_id, child):
        data = load(run_id, tracking_uri=store.uri, images=False)
        assert data.parent_id == store.parent_id and len(data.trials) == 2
    with pytest.raises(SasiError, match="--tracking-uri"):
        load(store.parent_id)
    with pytest.raises(SasiError, match="not an MLflow run ID"):
        load(str(tmp_path / "missing"))


def test_report_from_suite_files_alone(store, tmp_path):
    """Only <storage>/<suite> (results.parquet etc.), no MLflow store: tables and suite plots, no run pictures."""
    from sasi.platform.report import make_report

    shutil.copytree(store.storage / store.name, tmp_path / "copy" / store.name)
    data, paths = make_report(tmp_path / "copy" / store.name, tmp_path / "out")
    assert data.tracking_uri is None and data.trials == [] and len(data.results) == 2
    images = _images(paths["html"].read_text())
    assert set(images) == {"f1_vs_shots", "per_class_f1"}


def test_report_cli_attaches_to_parent_run(store, tmp_path):
    from mlflow.tracking import MlflowClient

    from sasi.cli import app

    result = CliRunner().invoke(app, ["report", str(store.storage), "--out", str(tmp_path / "r"), "--attach"])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output and store.parent_id in result.output
    listed = [a.path for a in MlflowClient(store.uri).list_artifacts(store.parent_id, "report")]
    assert sorted(listed) == ["report/report.html", "report/report.md"]


def test_ui_reports_what_is_missing(tmp_path, monkeypatch):
    from sasi.cli import app
    from sasi.platform import ui

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SASI_UI_ENV", raising=False)
    runner = CliRunner()
    result = runner.invoke(app, ["ui", "--storage", str(tmp_path)])
    assert isinstance(result.exception, SasiError) and "no MLflow store" in str(result.exception)
    result = runner.invoke(app, ["ui", "--optuna", "--storage", str(tmp_path)])
    assert isinstance(result.exception, SasiError) and "no mirrored Optuna study" in str(result.exception)
    for name in ("a", "b"):
        (tmp_path / f"{name}-optuna.db").touch()
    with pytest.raises(SasiError, match="several Optuna studies here \\(a, b\\)"):
        ui.optuna_storage(tmp_path)
    assert ui.optuna_storage(tmp_path, "b") == f"sqlite:///{tmp_path.resolve()}/b-optuna.db"
    with pytest.raises(SasiError, match="no mlflow executable"):
        ui.mlflow_command("sqlite:///x.db", "127.0.0.1", 5000, ui_env=tmp_path)
    fake = tmp_path / "venv" / "bin" / "mlflow"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    command = ui.mlflow_command("sqlite:///x.db", "127.0.0.1", 5123, ui_env=tmp_path / "venv")
    assert command[:2] == [str(fake), "ui"] and command[command.index("--host") + 1] == "127.0.0.1"
    if not ui.full_mlflow_here():
        with pytest.raises(SasiError, match="only mlflow-skinny"):
            ui.mlflow_command("sqlite:///x.db", "127.0.0.1", 5000)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(SasiError, match="pass another --port"):
            ui.check_port("127.0.0.1", busy.getsockname()[1])


def test_runs_link_points_at_the_runs_table(store):
    from sasi.platform.ui import runs_link

    link = runs_link(store.uri, "http://127.0.0.1:5000")
    assert link == f"http://127.0.0.1:5000/#/experiments/{store.experiment_id}/runs?workflowType=machine_learning"
    missing = Path(store.storage).resolve() / "missing.db"
    assert runs_link(f"sqlite:///{missing}", "http://x") is None and not missing.exists()


def test_publish_attaches_report_and_logs_compute(tmp_path):
    """What a suite calls at its end: report next to the results, on the parent run, GPU-hours as metrics."""
    from mlflow.tracking import MlflowClient

    from sasi.platform.report import publish_quietly

    store = build_suite_store(tmp_path / "storage", name="pub", gpus=2, minutes=(30, 90))
    html = publish_quietly(store.parent_id, store.uri, str(store.storage), "pub")
    assert html == store.storage / "pub" / "report" / "report.html" and html.is_file()
    client = MlflowClient(store.uri)
    assert {a.path for a in client.list_artifacts(store.parent_id, "report")} == {"report/report.html",
                                                                                   "report/report.md"}
    metrics = client.get_run(store.parent_id).data.metrics
    assert metrics["trial_hours/sasi"] == pytest.approx(0.5) and metrics["trial_hours/total"] == pytest.approx(2)
    assert metrics["gpu_hours/sasi"] == pytest.approx(1) and metrics["gpu_hours/supervised-only"] == pytest.approx(3)
    assert metrics["gpu_hours/total"] == pytest.approx(4)
    assert "| total | 2 | 2.000 | 4.000 |" in (html.parent / "report.md").read_text()


def test_publish_failure_is_one_warning(store, tmp_path, caplog):
    from sasi.platform.report import publish_quietly

    assert publish_quietly("0" * 32, store.uri, str(tmp_path), "gone") is None
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1
    message = warned[0]
    assert message.startswith("suite report skipped: SasiError: cannot read the MLflow store") and "\n" not in message
    assert not (tmp_path / "gone").exists()


def test_compute_metrics_leave_out_unknown_gpus():
    from sasi.platform.report import SuiteData, Trial, compute_metrics, compute_table

    def trial(variant: str, hours: float, tags: dict) -> Trial:
        return Trial(variant, variant, "FINISHED", {"variant": variant, **tags}, {}, {}, 1, 1 + round(hours * 3.6e6))

    data = SuiteData("s", "s", pd.DataFrame(), [trial("a", 1, {"sasi.gpus": "4"}), trial("a", 0.5, {"sasi.gpus": "4"}),
                                                 trial("b", 2, {})])
    assert compute_metrics(compute_table(data)) == {"trial_hours/a": 1.5, "gpu_hours/a": 6.0, "trial_hours/b": 2.0,
                                                    "trial_hours/total": 3.5}
    assert compute_metrics(compute_table(SuiteData("s", "s", pd.DataFrame()))) == {}
