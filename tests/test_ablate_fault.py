"""Fault injection through the CLI: SIGKILL the driver of a tiny `sasi ablate`, rerun the same command.

Nothing lost (every grid point ends with one FINISHED MLflow child run and a result row), nothing duplicated.
Ray starts twice: 240 s measured at load average 6-8 on 2 shared cores, less on an idle machine.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from _helpers import RAY_TEST_ENV, ROOT, mlflow_runs

SUITE = """name: fault
recipe: tiny-v1
shots: [2]
seeds: [0]
base: {train.checkpoint_every: 5}
variants:
  a: {preset: df-cc3d}
  b: {preset: df-cc3d, overrides: {train.lr: 0.0003}}
"""


@pytest.mark.ray
@pytest.mark.timeout(400)
def test_killed_ablate_driver_rerun_loses_and_duplicates_nothing(tmp_path):
    (tmp_path / "fault.yaml").write_text(SUITE)
    storage = tmp_path / "runs"
    command = [str(Path(sys.executable).parent / "sasi"), "ablate", str(tmp_path / "fault.yaml"), "--quick",
               "--storage", str(storage)]
    env = {**os.environ, **RAY_TEST_ENV}
    env.pop("RAY_ADDRESS", None)  # a local cluster of its own, started (and restarted) by the command
    started = time.perf_counter()
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.time() + 120
        while not list(storage.glob("fault-quick-*/checkpoint_*")) and driver.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert driver.poll() is None, "the suite ended before the driver could be killed"
        assert list(storage.glob("fault-quick-*/checkpoint_*")), "no trial reached a checkpoint"
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    killed_at = time.perf_counter() - started
    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    print(f"killed after {killed_at:.1f} s; rerun {time.perf_counter() - started - killed_at:.1f} s")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    results = pd.read_parquet(storage / "fault-quick" / "results.parquet")
    assert sorted(results["variant"]) == ["a", "b"] and (results["error"] == "").all()
    _, runs = mlflow_runs(f"sqlite:///{storage.resolve()}/mlflow.db")
    children = [r for r in runs if r.data.tags.get("sasi.role") == "trial"]
    assert sorted(r.data.tags["variant"] for r in children) == ["a", "b"]  # 0 lost, 0 duplicated
    assert len({r.data.tags["ray.trial_id"] for r in children}) == 2
    assert {r.info.status for r in runs} == {"FINISHED"}
