"""``cluster/aws.yaml``: the Ray cluster-launcher config for AWS (EC2, S3 storage)."""

from __future__ import annotations

from targets.vm import head_node_type, launcher_config, node_type


def aws_config(s: dict) -> dict:
    a = s["aws"]

    def node_config(instance_type: str) -> dict:
        return {
            "InstanceType": instance_type,
            "ImageId": a["image_id"],
            "BlockDeviceMappings": [
                {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": a["disk_gb"], "VolumeType": "gp3"}}
            ],
        }

    node_types = head_node_type(s, node_config(a["head"]["instance_type"]))
    for name, wt in s["worker_types"].items():
        nc = node_config(a[name]["instance_type"])
        nc["IamInstanceProfile"] = {"Name": a["worker_instance_profile"]}
        if s["spot"]:
            nc["InstanceMarketOptions"] = {"MarketType": "spot"}
        node_types[name] = node_type(wt["max_workers"], {"CPU": a[name]["cpus"], "GPU": wt["gpus"]}, nc)
    provider = {
        "type": "aws",
        "region": a["region"],
        "availability_zone": a["availability_zone"],
        "cache_stopped_nodes": False,  # terminate idle nodes (spot nodes cannot be stopped anyway)
    }
    return launcher_config(s, provider, {"ssh_user": "ubuntu"}, node_types, "s3")
