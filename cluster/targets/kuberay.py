"""``cluster/kuberay/``: an autoscaling RayCluster, a RayJob for one suite, and the MLflow server (``ray.io/v1``)."""

from __future__ import annotations

import json
from typing import Any

from targets.common import (DRIVER_RESOURCE, IMAGE_WORKDIR, MLFLOW_SERVICE, cluster_image, dump, k8s_name,
                            k8s_tracking_uri, mlflow_artifacts_uri, mlflow_server_argv, runtime_env, storage_uri,
                            suite_entrypoint)


def _k8s_env(s: dict) -> list[dict]:
    k = s["kuberay"]
    return [
        {"name": "SASI_STORAGE", "value": storage_uri(s, k["storage_scheme"])},
        {"name": "MLFLOW_TRACKING_URI", "value": k8s_tracking_uri(s)},
    ]


def _shm() -> tuple[list[dict], list[dict]]:
    """A memory-backed /dev/shm (Docker's 64 MiB default starves Ray's object store and DataLoaders)."""
    return [{"name": "dshm", "emptyDir": {"medium": "Memory"}}], [{"name": "dshm", "mountPath": "/dev/shm"}]


def raycluster_spec(s: dict) -> dict:
    k = s["kuberay"]
    volumes, mounts = _shm()
    head_res = {"cpu": k["head"]["cpu"], "memory": k["head"]["memory"]}
    spec: dict[str, Any] = {
        "rayVersion": s["ray_version"],
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "version": "v2",
            "upscalingMode": "Default",
            "idleTimeoutSeconds": k["autoscaler_idle_timeout_s"],
        },
        # The operator injects RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (from this Secret, key auth_token)
        # into the head, worker, autoscaler containers; the Secret is created by hand (README).
        "authOptions": (
            {"mode": "token", "secretName": k["auth_secret"]} if s["token_auth"] else {"mode": "disabled"}
        ),
        "headGroupSpec": {
            "rayStartParams": {
                "num-cpus": "0",  # no training on the head: suite driver + Tune trial drivers only
                "resources": json.dumps(json.dumps({DRIVER_RESOURCE: s["head_driver_slots"]})),
            },
            "template": {
                "spec": {
                    "serviceAccountName": k["service_account"],
                    "containers": [
                        {
                            "name": "ray-head",
                            "image": cluster_image(s),
                            "env": _k8s_env(s),
                            "ports": [
                                {"containerPort": 6379, "name": "gcs-server"},
                                {"containerPort": 8265, "name": "dashboard"},
                                {"containerPort": 10001, "name": "client"},
                            ],
                            "resources": {"requests": dict(head_res), "limits": dict(head_res)},
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                }
            },
        },
        "workerGroupSpecs": [],
    }
    for name, wt in s["worker_types"].items():
        res = {"cpu": k[name]["cpu"], "memory": k[name]["memory"], "nvidia.com/gpu": wt["gpus"]}
        pod_spec: dict[str, Any] = {
            "serviceAccountName": k["service_account"],
            "tolerations": list(k["gpu_tolerations"]),
            "containers": [
                {
                    "name": "ray-worker",
                    "image": cluster_image(s),
                    "env": _k8s_env(s),
                    "resources": {"requests": dict(res), "limits": dict(res)},
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        }
        if k["gpu_node_selector"]:
            pod_spec["nodeSelector"] = dict(k["gpu_node_selector"])
        spec["workerGroupSpecs"].append(
            {
                "groupName": k8s_name(name),
                "replicas": 0,
                "minReplicas": 0,
                "maxReplicas": wt["max_workers"],
                "rayStartParams": {},
                "template": {"spec": pod_spec},
            }
        )
    return spec


def raycluster_manifest(s: dict) -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": s["cluster_name"], "namespace": s["kuberay"]["namespace"]},
        "spec": raycluster_spec(s),
    }


def rayjob_manifest(s: dict) -> dict:
    k = s["kuberay"]
    renv = runtime_env(s, working_dir=IMAGE_WORKDIR)  # the repository copy baked into the image
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": f"sasi-{k8s_name(s['suite'])}", "namespace": k["namespace"]},
        "spec": {
            "entrypoint": suite_entrypoint(s, storage_uri(s, k["storage_scheme"]), k8s_tracking_uri(s)),
            "runtimeEnvYAML": dump(renv),
            "submissionMode": "K8sJobMode",
            "backoffLimit": 0,
            "shutdownAfterJobFinishes": True,  # tear the cluster down when the suite ends
            "ttlSecondsAfterFinished": k["job_ttl_after_finished_s"],
            "activeDeadlineSeconds": k["job_active_deadline_s"],
            "rayClusterSpec": raycluster_spec(s),
        },
    }


def mlflow_manifests(s: dict) -> list[dict]:
    k = s["kuberay"]
    ns, port = k["namespace"], s["mlflow_port"]
    labels = {"app.kubernetes.io/name": MLFLOW_SERVICE}
    fqdn = f"{MLFLOW_SERVICE}.{ns}.svc.cluster.local"
    allowed = [MLFLOW_SERVICE, f"{MLFLOW_SERVICE}:*", f"{MLFLOW_SERVICE}.{ns}", f"{MLFLOW_SERVICE}.{ns}:*"]
    allowed += [fqdn, f"{fqdn}:*", "localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*"]
    argv = mlflow_server_argv(s, "sqlite:////mlflow/mlflow.db", mlflow_artifacts_uri(s, k["storage_scheme"]))
    argv += ["--allowed-hosts", ",".join(allowed)]
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": k["service_account"], "namespace": ns},
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "mlflow-db", "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": k["mlflow_volume"]}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": MLFLOW_SERVICE, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},  # sqlite on a RWO volume: one writer at a time
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": k["service_account"],
                        "securityContext": {"fsGroup": 100},  # `ray` user (uid 1000, gid 100) owns the volume
                        "containers": [
                            {
                                "name": "mlflow",
                                "image": cluster_image(s),
                                "command": argv,
                                "ports": [{"containerPort": port, "name": "http"}],
                                "readinessProbe": {"httpGet": {"path": "/health", "port": port}},
                                "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                                "volumeMounts": [{"name": "db", "mountPath": "/mlflow"}],
                            }
                        ],
                        "volumes": [{"name": "db", "persistentVolumeClaim": {"claimName": "mlflow-db"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": MLFLOW_SERVICE, "namespace": ns, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": port, "targetPort": port}]},
        },
    ]
