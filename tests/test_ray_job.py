"""The README's cluster path on one machine: `ray start --head` + `ray job submit -- sasi ablate ablations/smoke.yaml`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from _helpers import RAY_TEST_ENV, ROOT, free_port, mlflow_runs, ray_head_port_flags

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]


def _wait_for_http(url: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(1)


def test_smoke_suite_as_ray_job(tmp_path):
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, **RAY_TEST_ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    ports = ray_head_port_flags()
    dash = next(f.split("=")[1] for f in ports if f.startswith("--dashboard-port="))
    head = subprocess.Popen([str(bin_dir / "ray"), "start", "--head", "--block", f"--port={free_port()}",
                             "--num-cpus=2", "--dashboard-host=127.0.0.1", *ports],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    storage = tmp_path / "results"
    try:
        started = time.perf_counter()
        _wait_for_http(f"http://127.0.0.1:{dash}/api/version", timeout=120)
        print(f"head up: {time.perf_counter() - started:.1f} s")
        submit = [str(bin_dir / "ray"), "job", "submit", f"--address=http://127.0.0.1:{dash}", "--working-dir", ".",
                  "--", "sasi", "ablate", "ablations/smoke.yaml", "--quick", "--storage", str(storage)]
        deadline = time.time() + 120  # the job agent registers a few seconds after the dashboard answers
        while True:
            job = subprocess.run(submit, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
            if "No available agent" not in job.stdout + job.stderr or time.time() > deadline:
                break
            time.sleep(3)
        print(f"smoke suite as a Ray job: {time.perf_counter() - started:.1f} s")
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
    results = pd.read_parquet(storage / "smoke-quick" / "results.parquet")
    assert sorted(results["variant"]) == ["sasi-star-faithful", "supervised-only"]
    assert results["test_class_f1"].notna().all()
    assert "| variant | 5 shots |" in (storage / "smoke-quick" / "summary.md").read_text()
    _, runs = mlflow_runs(f"sqlite:///{storage.resolve()}/mlflow.db")
    assert sorted(r.data.tags.get("sasi.role") for r in runs) == ["suite", "trial", "trial"]
    assert {r.info.status for r in runs} == {"FINISHED"}
