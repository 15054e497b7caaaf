"""Shared test helpers: free ports for local servers (so tests never collide) and MLflow run lookup."""

from __future__ import annotations

import socket
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY_TEST_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "60"}


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ray_head_port_flags() -> list[str]:
    """`ray start --head` flags that move every fixed default port (dashboard agent 52365, …) to a free one.

    Another Ray instance in the same test session (e.g. a module's ``ray.init``) holds the defaults; a second
    head that reuses them comes up without a dashboard agent and rejects `ray job submit`.
    """
    flags = ["dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "runtime-env-agent-port", "metrics-export-port"]
    return [f"--{flag}={free_port()}" for flag in flags]


def mlflow_runs(uri: str):
    """(client, all runs of the ``sasi`` experiment) in the store at ``uri``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("sasi")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)
