"""What the Ray cluster-launcher targets (``ray up``: AWS, GCP) share: docker, head, start commands."""

from __future__ import annotations

import shlex
from typing import Any

from targets.common import (DRIVER_RESOURCE, HEAD_TYPE, MLFLOW_DIR, REMOTE_TOKEN_DIR, cluster_image,
                            mlflow_artifacts_uri, mlflow_server_argv, storage_uri)


def _launcher_commands(s: dict, scheme: str) -> dict:
    port = s["mlflow_port"]
    backend = f"sqlite:///{MLFLOW_DIR}/mlflow.db"  # container path on the head (lost on `ray down`)
    server = shlex.join(mlflow_server_argv(s, backend, mlflow_artifacts_uri(s, scheme)))
    # Start the tracking server unless it already answers (`ray up` re-runs these commands on restarts).
    health = f"python -c \"import urllib.request as u; u.urlopen('http://127.0.0.1:{port}/health', timeout=2)\""
    start_mlflow = (
        f"mkdir -p {MLFLOW_DIR} && "
        f"({health} 2>/dev/null || (nohup {server} > /tmp/mlflow-server.log 2>&1 &))"
    )
    head_ip = "$(python -c 'import ray.util; print(ray.util.get_node_ip_address())')"
    return {
        "initialization_commands": [],
        "setup_commands": [],  # everything is in the image; code ships with each job's working_dir
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [
            "ray stop",
            start_mlflow,
            (
                f"ulimit -n 65536; export MLFLOW_TRACKING_URI=http://{head_ip}:{port}; "
                "ray start --head --port=6379 --object-manager-port=8076 "
                "--autoscaling-config=~/ray_bootstrap_config.yaml --dashboard-host=0.0.0.0"
            ),
        ],
        "worker_start_ray_commands": [
            "ray stop",
            (
                f"ulimit -n 65536; export MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:{port}; "
                "ray start --address=$RAY_HEAD_IP:6379 --object-manager-port=8076"
            ),
        ],
    }


def _docker(s: dict, scheme: str) -> dict:
    run_options = [
        "--ulimit nofile=65536:65536",
        f"-e SASI_STORAGE={storage_uri(s, scheme)}",
    ]
    if s["token_auth"]:
        run_options += ["-e RAY_AUTH_MODE=token", f"-e RAY_AUTH_TOKEN_PATH={REMOTE_TOKEN_DIR}/auth_token"]
    return {
        "image": cluster_image(s),
        "container_name": "ray_container",
        "pull_before_run": True,
        "run_options": run_options,
    }


def node_type(max_workers: int, resources: dict, node_config: dict) -> dict:
    """One entry of ``available_node_types`` (the autoscaler starts none until work asks for it)."""
    return {"min_workers": 0, "max_workers": max_workers, "resources": resources, "node_config": node_config}


def head_node_type(s: dict, node_config: dict) -> dict:
    """The head: no CPUs for training, one ``DRIVER_RESOURCE`` unit per concurrent Tune trial driver."""
    return {HEAD_TYPE: node_type(0, {"CPU": 0, DRIVER_RESOURCE: s["head_driver_slots"]}, node_config)}


def launcher_config(s: dict, provider: dict, auth: dict, node_types: dict, scheme: str) -> dict:
    cfg: dict[str, Any] = {
        "cluster_name": s["cluster_name"],
        "max_workers": s["max_workers"],
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": s["idle_timeout_minutes"],
        "docker": _docker(s, scheme),
        "provider": provider,
        "auth": auth,
        "available_node_types": node_types,
        "head_node_type": HEAD_TYPE,
        "file_mounts": {REMOTE_TOKEN_DIR: s["local_token_dir"]} if s["token_auth"] else {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }
    cfg.update(_launcher_commands(s, scheme))
    return cfg
