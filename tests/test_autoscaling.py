"""Autoscaling end to end on a local fake multi-node Ray cluster (autoscaler v2, ~2 minutes on 2 CPUs).

The cluster looks like ``cluster/*.yaml``: a head with ``CPU: 0`` and ``train_driver`` slots (suite and trial
drivers, no training) and one worker type ``{CPU: 2, fake_gpu: 1}``, 0..2 nodes. An ablation suite whose Train
workers ask for ``fake_gpu`` (``resources.per_worker``) makes the autoscaler add workers, and the idle timeout
removes them after the suite. The timeline is printed and written to ``benchmarks/results/autoscaling.json``.

Why not ``ray.cluster_utils.AutoscalingCluster`` (Ray 2.60 wheel): it reads a ``fake_multi_node/example.yaml``
the wheel does not ship, and its start/shutdown run ``ray stop --force``, which kills every Ray process of the
user on the machine. So: the same config shape with provider type ``external`` pointing at
``FakeMultiNodeProvider``, our own free ports and temp dir, and the head as ``ray start --head --block``
stopped by its PID (plus any leftover process naming this temp dir or GCS port).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml
from _helpers import free_port, ray_head_port_flags

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "autoscaling.json"
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "120"}
IDLE_TIMEOUT_MIN = 0.1  # 6 s
UPDATE_INTERVAL_S = 1
MAX_WORKERS = 2
WORKER = {"CPU": 2, "fake_gpu": 1}
DRIVER_SLOTS = 2
SCALE_DOWN_LIMIT_S = 90
pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]



def _cluster_config(gcs_address: str, head_node_id: str) -> dict:
    return {
        "cluster_name": "sasi-fake-autoscaling",
        "max_workers": MAX_WORKERS,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "provider": {
            "type": "external",
            "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
            "gcs_address": gcs_address,  # else fake workers dial <ip>:6379
            "head_node_id": head_node_id,
            "launch_multiple": True,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0, "train_driver": DRIVER_SLOTS}, "node_config": {},
                                 "max_workers": 0},
            "fake_gpu_worker": {"resources": dict(WORKER), "node_config": {}, "min_workers": 0,
                                "max_workers": MAX_WORKERS},
        },
        "head_node_type": "ray.head.default",
        "docker": {}, "auth": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


@dataclass
class FakeCluster:
    gcs_address: str
    temp_dir: str
    started_s: float  # `ray start` until the GCS accepts connections


def _stop(head: subprocess.Popen, temp_dir: str, port: int) -> None:
    """Stop the head by PID, SIGKILL anything still naming this run's temp dir or GCS port, drop the temp dir."""
    started, killed = time.monotonic(), 0
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)  # `ray start --block` tears down the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
    gcs_port = re.compile(rf":{port}(?!\d)")
    for _ in range(3):  # fake worker raylets are started by the autoscaler, not by `ray start`
        out = subprocess.run(["ps", "-eo", "pid=,args="], check=False, capture_output=True, text=True).stdout
        left = [int(line.split(None, 1)[0]) for line in out.splitlines()
                if temp_dir in line or gcs_port.search(line)]
        left = [pid for pid in left if pid not in (os.getpid(), head.pid)]
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(1)
    shutil.rmtree(temp_dir, ignore_errors=True)
    print(f"cluster stopped in {time.monotonic() - started:.1f} s ({killed} leftover process(es) killed)", flush=True)


@pytest.fixture
def fake_cluster():
    """The head (``ray start --head --block`` with the fake provider); always stopped, even on failure."""
    try:
        from ray.autoscaler._private.fake_multi_node.node_provider import (  # noqa: F401
            FAKE_HEAD_NODE_ID,
            FakeMultiNodeProvider,
        )
    except ImportError as exc:
        pytest.skip(f"Ray's fake multi-node provider is not importable: {exc}")
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.is_file():
        pytest.skip(f"no `ray` CLI next to {sys.executable}")
    ip = ray.util.get_node_ip_address()
    port = free_port()
    gcs = f"{ip}:{port}"
    temp_dir = tempfile.mkdtemp(prefix="sasi_as_")  # short: Ray's socket paths must stay < 108 chars
    config = Path(temp_dir) / "autoscaling.json"
    config.write_text(json.dumps(_cluster_config(gcs, FAKE_HEAD_NODE_ID)))
    env = {**os.environ, **ENV, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": str(UPDATE_INTERVAL_S),
           "RAY_enable_autoscaler_v2": "1", "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
           "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # SIGTERM: stop at once, don't drain for 30 s
    env.pop("RAY_ADDRESS", None)
    cmd = [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=0",
           f"--resources={json.dumps({'train_driver': DRIVER_SLOTS})}", f"--autoscaling-config={config}",
           f"--temp-dir={temp_dir}", "--min-worker-port=0", "--max-worker-port=0",
           *ray_head_port_flags(), "--include-dashboard=true"]
    started = time.monotonic()
    try:
        with open(Path(temp_dir) / "head.log", "w") as log:
            head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection((ip, port), timeout=0.5):
                    break
            except OSError:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the head did not come up: {(Path(temp_dir) / 'head.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield FakeCluster(gcs, temp_dir, time.monotonic() - started)
    finally:
        if ray.is_initialized():
            ray.shutdown()  # before the GCS goes away
        _stop(head, temp_dir, port)


class Watcher(threading.Thread):
    """Polls every 0.5 s; records (s since ``t0``, alive ``fake_gpu`` nodes, live ``fake_gpu`` placement groups)
    at every change. The placement groups are the demand: Ray Train's worker groups."""

    def __init__(self, t0: float):
        super().__init__(daemon=True)
        self.t0, self.timeline, self.done = t0, [], threading.Event()

    @staticmethod
    def workers() -> int:
        import ray

        return sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("fake_gpu"))

    @staticmethod
    def demand() -> int:
        import ray

        return sum(1 for pg in ray.util.placement_group_table().values() if pg["state"] != "REMOVED"
                   and any(b.get("fake_gpu") for b in pg["bundles"].values()))

    def run(self) -> None:
        last = None
        while not self.done.is_set():
            now = (self.workers(), self.demand())
            if now != last:
                t = round(time.monotonic() - self.t0, 1)
                self.timeline.append((t, *now))
                print(f"  t={t:6.1f} s  fake_gpu workers={now[0]}  worker groups asking for fake_gpu={now[1]}",
                      flush=True)
                last = now
            time.sleep(0.5)

    def first(self, pred, after: float = 0.0) -> float | None:
        return next((t for t, n, d in self.timeline if t >= after and pred(n, d)), None)

    def demand_over(self) -> float | None:
        """When the last worker group let go of its ``fake_gpu`` placement group (None while any is live)."""
        if not self.timeline or self.timeline[-1][2]:
            return None
        busy = [i for i, (_, _, d) in enumerate(self.timeline) if d]
        return self.timeline[busy[-1] + 1][0] if busy else None


def _write_data(storage: Path) -> None:
    """tiny-v1 at (32, 64, 64) where ``ensure_data`` looks for it, so the suite driver skips simulating."""
    from sasi.simulate import get_recipe, simulate_dataset

    recipe = get_recipe("tiny-v1")
    simulate_dataset(storage / "data" / "tiny-v1-seed0", replace(recipe.simulation, shape=(32, 64, 64)),
                     recipe.splits, seed=0, recipe=recipe.name, progress=False)


def test_suite_scales_fake_gpu_workers_up_and_down(fake_cluster, tmp_path):
    import ray
    from mlflow.tracking import MlflowClient

    storage = tmp_path / "results"
    _write_data(storage)
    suite = tmp_path / "autoscale.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "autoscale", "recipe": "tiny-v1", "data_seed": 0, "shots": [2], "seeds": [0, 1],
        "base": {"data": {"patch": 16}, "model": {"channels": [8, 12, 16]},
                 "train": {"iterations": 4, "eval_every": 2, "batch_size": 2, "device": "cpu"},
                 "detect": {"min_size": 10}},
        "variants": {"supervised-only": {"preset": "df-cc3d"}},
        "resources": {"workers": 1, "per_worker": {"CPU": 1, "fake_gpu": 1}},
    }))
    ray.init(address=fake_cluster.gcs_address, log_to_driver=False)
    assert Watcher.workers() == 0, "the cluster must start without workers"

    print(f"\nhead up in {fake_cluster.started_s:.1f} s; suite submitted at t=0", flush=True)
    t0 = time.monotonic()
    watcher = Watcher(t0)
    watcher.start()
    env = {**os.environ, **ENV, "RAY_ADDRESS": fake_cluster.gcs_address}  # init_ray() joins this cluster
    log = tmp_path / "suite.log"
    try:
        with open(log, "w") as out:
            job = subprocess.run([str(Path(sys.executable).parent / "sasi"), "ablate", str(suite),
                                  "--storage", str(storage)], check=False, cwd=ROOT, env=env, stdout=out,
                                 stderr=subprocess.STDOUT, timeout=300)
        suite_s = time.monotonic() - t0
        print(f"  t={suite_s:6.1f} s  suite finished (rc {job.returncode})", flush=True)
        deadline = time.monotonic() + SCALE_DOWN_LIMIT_S
        while time.monotonic() < deadline:
            idle = watcher.demand_over()
            if idle is not None and watcher.first(lambda n, d: n == 0, after=idle) is not None:
                break
            time.sleep(0.5)
    finally:
        watcher.done.set()
        watcher.join()

    demand = watcher.first(lambda n, d: d >= 1)
    first_up = watcher.first(lambda n, d: n >= 1)
    idle = watcher.demand_over()
    zero = None if idle is None else watcher.first(lambda n, d: n == 0, after=idle)
    timing = {
        "seconds_to_first_demand": demand,  # suite driver start, Tune, trial drivers, Train controller
        "seconds_demand_to_first_worker": None if None in (demand, first_up) else round(first_up - demand, 1),
        "seconds_to_first_worker": first_up,
        "peak_workers": max(n for _, n, _ in watcher.timeline),
        "peak_worker_groups": max(d for _, _, d in watcher.timeline),
        "suite_seconds": round(suite_s, 1),
        "seconds_last_demand_to_zero_workers": None if zero is None else round(zero - idle, 1),
        "seconds_suite_end_to_zero_workers": None if zero is None else round(max(0.0, zero - suite_s), 1),
    }
    print(f"autoscaling timeline (s since submit, fake_gpu workers, worker groups): {watcher.timeline}")
    print("autoscaling: " + ", ".join(f"{k}={v}" for k, v in timing.items()), flush=True)

    assert job.returncode == 0, log.read_text()[-4000:]
    assert watcher.timeline[0][1] == 0 and first_up is not None and timing["peak_workers"] >= 1, watcher.timeline
    client = MlflowClient(f"sqlite:///{storage.resolve()}/mlflow.db")
    experiment = client.get_experiment_by_name("sasi")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("sasi.role") == "suite"]
    children = [r for r in runs if r.data.tags.get("sasi.role") == "trial"]
    assert len(parents) == 1 and len(children) == 2, [r.data.tags for r in runs]
    assert {r.data.tags.get("mlflow.parentRunId") for r in children} == {parents[0].info.run_id}
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert zero is not None and zero - suite_s <= SCALE_DOWN_LIMIT_S, \
        f"workers still up {SCALE_DOWN_LIMIT_S} s after the suite: {watcher.timeline}"

    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps({
        "meta": {"ray": ray.__version__, "autoscaler": "v2", "provider": "FakeMultiNodeProvider (local processes)",
                 "idle_timeout_minutes": IDLE_TIMEOUT_MIN, "update_interval_s": UPDATE_INTERVAL_S,
                 "head": {"CPU": 0, "train_driver": DRIVER_SLOTS}, "worker_type": WORKER, "max_workers": MAX_WORKERS,
                 "trials": 2, "train_workers_per_trial": 1, "host_cpus": os.cpu_count(),
                 "host": platform.platform(), "head_start_seconds": round(fake_cluster.started_s, 1)},
        **timing,
        "timeline": [{"t": t, "fake_gpu_workers": n, "worker_groups": d} for t, n, d in watcher.timeline],
    }, indent=2) + "\n")
