"""``cluster/gcp.yaml``: the Ray cluster-launcher config for GCP (Compute Engine, GCS storage)."""

from __future__ import annotations

from typing import Any

from targets.vm import head_node_type, launcher_config, node_type


def gcp_config(s: dict) -> dict:
    g = s["gcp"]

    def node_config(spec: dict, gpu: bool) -> dict:
        nc: dict[str, Any] = {
            "machineType": spec["machine_type"],
            "disks": [
                {
                    "boot": True,
                    "autoDelete": True,
                    "type": "PERSISTENT",
                    "initializeParams": {"diskSizeGb": g["disk_gb"], "sourceImage": g["source_image"]},
                }
            ],
        }
        if gpu:
            if spec.get("accelerator_type"):
                nc["guestAccelerators"] = [
                    {"acceleratorType": spec["accelerator_type"], "acceleratorCount": spec["gpus"]}
                ]
            nc["metadata"] = {"items": [{"key": "install-nvidia-driver", "value": "True"}]}
            scheduling: dict[str, Any] = {"onHostMaintenance": "TERMINATE", "automaticRestart": False}
            if s["spot"]:
                scheduling.update({"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"})
            nc["scheduling"] = scheduling
            # `ray up` creates this service account for the head; workers need it for gs:// storage.
            nc["serviceAccounts"] = [
                {
                    "email": f"ray-autoscaler-sa-v1@{g['project_id']}.iam.gserviceaccount.com",
                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                }
            ]
        return nc

    node_types = head_node_type(s, node_config(g["head"], gpu=False))
    for name, wt in s["worker_types"].items():
        spec = dict(g[name], gpus=wt["gpus"])
        resources = {"CPU": spec["cpus"], "GPU": wt["gpus"]}  # GCP does not auto-detect resources
        node_types[name] = node_type(wt["max_workers"], resources, node_config(spec, gpu=True))
    provider = {
        "type": "gcp",
        "region": g["region"],
        "availability_zone": g["availability_zone"],
        "project_id": g["project_id"],
        "cache_stopped_nodes": False,
    }
    return launcher_config(s, provider, {"ssh_user": "ubuntu"}, node_types, "gs")
