"""Render every cluster config under ``cluster/`` from ``cluster/settings.yaml``.

Usage (from anywhere)::

    python cluster/render.py            # write/refresh the generated files
    python cluster/render.py --check    # exit 1 and list the files that differ from a fresh render

Generated files (commit them; ``tests/test_cluster_configs.py`` fails if they drift):

* ``cluster/aws.yaml``, ``cluster/gcp.yaml``  -- Ray cluster-launcher configs (``ray up``)
* ``cluster/kuberay/raycluster.yaml``          -- long-lived autoscaling RayCluster (``ray.io/v1``)
* ``cluster/kuberay/rayjob.yaml``              -- one ablation suite on a throwaway cluster (``ray.io/v1``)
* ``cluster/kuberay/mlflow.yaml``              -- ServiceAccount + MLflow tracking server for Kubernetes
* ``cluster/runtime_env.yaml``                 -- ``ray job submit --runtime-env cluster/runtime_env.yaml``
* ``cluster/Dockerfile``                       -- the cluster image (``FROM rayproject/ray:<ver>-<py>-gpu``)

The configs are built as plain dicts, one module per target under ``cluster/targets/`` (``aws``, ``gcp`` and
their shared ``vm``, ``kuberay``, ``image``; ``common`` for settings and YAML writing), and written with a
``yaml.SafeDumper``; only ``yaml`` is needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # the per-target modules (targets/) sit next to this file, which runs as a script
    sys.path.insert(0, HERE)

from targets.aws import aws_config  # noqa: E402
from targets.common import CLUSTER_DIR, HEADER, dump, dump_all, load_settings, runtime_env  # noqa: E402
from targets.gcp import gcp_config  # noqa: E402
from targets.image import dockerfile  # noqa: E402
from targets.kuberay import mlflow_manifests, raycluster_manifest, rayjob_manifest  # noqa: E402


def render_all(s: dict | None = None) -> dict[str, str]:
    """Return {path relative to cluster/: file text} for every generated file."""
    s = load_settings() if s is None else s
    return {
        "aws.yaml": HEADER + dump(aws_config(s)),
        "gcp.yaml": HEADER + dump(gcp_config(s)),
        "kuberay/raycluster.yaml": HEADER + dump(raycluster_manifest(s)),
        "kuberay/rayjob.yaml": HEADER + dump(rayjob_manifest(s)),
        "kuberay/mlflow.yaml": HEADER + dump_all(mlflow_manifests(s)),
        "runtime_env.yaml": HEADER + dump(runtime_env(s)),
        "Dockerfile": dockerfile(s),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any")
    args = parser.parse_args(argv)

    stale = []
    for rel, text in render_all().items():
        path = CLUSTER_DIR / rel
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(rel)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    verb = "stale" if args.check else "wrote"
    for rel in stale:
        print(f"{verb}: cluster/{rel}")
    if not stale:
        print("cluster/ configs are up to date")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
