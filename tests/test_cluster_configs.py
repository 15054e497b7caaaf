"""Offline validation of the cloud cluster configs under cluster/.

* Launcher YAMLs (AWS, GCP): Ray's own ``prepare_config`` + ``validate_config`` (pinned Ray; the JSON schema
  ray/autoscaler/ray-schema.json plus head/min/max checks). No cloud SDK or credentials are needed.
* KubeRay manifests: the ``ray.io/v1`` openAPIV3Schema of the KubeRay v1.7.0 CRDs, read by path from
  ``../shared/kuberay-crds`` beside the checkout (never vendored), with ``jsonschema``. Unknown fields are made
  errors, as ``kubectl apply`` (strict field validation) does; jsonschema alone would accept them.
* Broken copies (typo key, wrong type) of each must fail, so the validators are known to bite.
* Project invariants: no training on the head, image tag == pinned Ray, max_workers >= sum(min_workers),
  shared storage URIs, the suite entrypoint exists, and the committed files equal a fresh render.
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")
ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
CRD_DIR = Path(__file__).resolve().parents[2] / "shared" / "kuberay-crds"
SHARED_URI = re.compile(r"^(s3|gs)://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/\S+$")
LAUNCHERS = {"aws": "aws.yaml", "gcp": "gcp.yaml"}
KUBERAY = {"RayCluster": "kuberay/raycluster.yaml", "RayJob": "kuberay/rayjob.yaml"}
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _load_render():
    spec = importlib.util.spec_from_file_location("sasi_cluster_render", CLUSTER / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts cluster/ on sys.path for its targets/ package
    return module


render = _load_render()
common = importlib.import_module("targets.common")
SETTINGS = common.load_settings()


def _yaml(rel: str):
    return yaml.safe_load((CLUSTER / rel).read_text())


def _image_ray_version(image: str) -> str:
    """'repo/name:2.60.0-py311-gpu' -> '2.60.0'."""
    assert ":" in image.rsplit("/", 1)[-1], f"image {image!r} has no tag"
    return image.rsplit(":", 1)[1].split("-", 1)[0]


# --------------------------------------------------------------------------------------------------
# single source of truth
# --------------------------------------------------------------------------------------------------


def test_committed_files_equal_fresh_render():
    stale = [rel for rel, text in render.render_all().items() if not (CLUSTER / rel).exists()
             or (CLUSTER / rel).read_text() != text]
    assert not stale, f"cluster/ files drifted from cluster/settings.yaml: {stale}; run `python cluster/render.py`"


def test_settings_ray_version_is_the_pinned_ray():
    from packaging.requirements import Requirement

    assert SETTINGS["ray_version"] == ray.__version__
    (ray_req,) = [Requirement(d) for d in PYPROJECT["project"]["dependencies"] if Requirement(d).name == "ray"]
    assert ray_req.specifier.contains(SETTINGS["ray_version"]), (ray_req, SETTINGS["ray_version"])


def test_no_host_paths_or_secrets_in_cluster_files():
    bad = re.compile(r"/(?:work|Users|home)/|aws_secret_access_key|BEGIN [A-Z ]*PRIVATE KEY", re.IGNORECASE)
    for path in sorted(CLUSTER.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            hits = bad.findall(path.read_text())
            assert not hits, f"{path.relative_to(REPO)} contains {hits}"


# --------------------------------------------------------------------------------------------------
# Ray cluster launcher: AWS and GCP
# --------------------------------------------------------------------------------------------------


def _prepared(raw: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(copy.deepcopy(raw))
    validate_config(cfg)
    return cfg


@pytest.mark.parametrize("cloud", LAUNCHERS)
def test_launcher_config_passes_ray_validation(cloud):
    cfg = _prepared(_yaml(LAUNCHERS[cloud]))
    assert cfg["provider"]["type"] == cloud
    # prepare_config merged Ray's provider defaults; ours must still win for the commands.
    assert cfg["setup_commands"] == [] and cfg["head_setup_commands"] == []


def _set(path: tuple, value):
    def mutate(cfg):
        *parents, last = path
        node = cfg
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


def _rename(path: tuple, new_key: str):
    def mutate(cfg):
        *parents, last = path
        node = cfg
        for key in parents:
            node = node[key]
        node[new_key] = node.pop(last)

    return mutate


LAUNCHER_BREAKAGES = {
    "typo-top-level-key": _rename(("idle_timeout_minutes",), "idle_timeout_minute"),
    "typo-node-type-key": _rename(("available_node_types", "gpu_1x", "min_workers"), "min_wokers"),
    "typo-docker-key": _rename(("docker", "pull_before_run"), "pull_before_runn"),
    "wrong-type-max-workers": _set(("max_workers",), "eight"),
    "wrong-type-gpu-count": _set(("available_node_types", "gpu_1x", "resources", "GPU"), "1"),
    "wrong-type-run-options": _set(("docker", "run_options"), "--ulimit nofile=65536:65536"),
}


@pytest.mark.parametrize("breakage", LAUNCHER_BREAKAGES)
@pytest.mark.parametrize("cloud", LAUNCHERS)
def test_broken_launcher_config_is_rejected(cloud, breakage):
    raw = _yaml(LAUNCHERS[cloud])
    LAUNCHER_BREAKAGES[breakage](raw)
    expected = "was unexpected" if breakage.startswith("typo") else "is not of type"
    with pytest.raises(jsonschema.ValidationError, match=expected):
        _prepared(raw)


def test_launcher_min_workers_above_max_is_rejected():
    raw = _yaml(LAUNCHERS["aws"])
    raw["available_node_types"]["gpu_1x"]["min_workers"] = raw["max_workers"] + 1
    with pytest.raises(ValueError, match="max_workers"):
        _prepared(raw)


@pytest.mark.parametrize("cloud", LAUNCHERS)
def test_launcher_invariants(cloud):
    cfg = _prepared(_yaml(LAUNCHERS[cloud]))
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}

    # no training on the head: it only hosts the suite driver and the Tune trial drivers
    assert head["resources"]["CPU"] == 0
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"][common.DRIVER_RESOURCE] >= 1
    assert head["max_workers"] == 0

    # image: the pinned Ray version, the image built from cluster/Dockerfile, no ray-ml
    image = cfg["docker"]["image"]
    assert _image_ray_version(image) == ray.__version__
    assert image == common.cluster_image(SETTINGS) and "ray-ml" not in image
    assert "head_image" not in cfg["docker"] and "worker_image" not in cfg["docker"]

    # autoscaling from zero, with caps and an idle timeout
    assert cfg["max_workers"] >= sum(t["min_workers"] for t in types.values())
    assert cfg["idle_timeout_minutes"] > 0
    assert workers, "no worker node types"
    for name, t in workers.items():
        assert t["min_workers"] == 0, name
        assert 1 <= t["max_workers"] <= cfg["max_workers"], name
        assert t["resources"]["GPU"] >= 1 and t["resources"]["CPU"] >= 1, name
    assert {t["resources"]["GPU"] for t in workers.values()} >= {1, 8}

    # spot/preemptible GPU workers, on-demand head
    if SETTINGS["spot"]:
        for name, t in workers.items():
            nc = t["node_config"]
            if cloud == "aws":
                assert nc["InstanceMarketOptions"]["MarketType"] == "spot", name
            else:
                assert nc["scheduling"]["provisioningModel"] == "SPOT", name
                assert nc["scheduling"]["onHostMaintenance"] == "TERMINATE", name
    assert "InstanceMarketOptions" not in head["node_config"] and "scheduling" not in head["node_config"]

    # shared storage for Tune/Train and for MLflow artifacts, on the cloud's own object store
    scheme = {"aws": "s3", "gcp": "gs"}[cloud]
    env = dict(o[3:].split("=", 1) for o in cfg["docker"]["run_options"] if o.startswith("-e "))
    assert SHARED_URI.match(env["SASI_STORAGE"]) and env["SASI_STORAGE"].startswith(f"{scheme}://")
    head_cmds = " ".join(cfg["head_start_ray_commands"])
    artifacts = shlex.split(head_cmds.split("--artifacts-destination", 1)[1])[0]
    assert SHARED_URI.match(artifacts) and artifacts.startswith(f"{scheme}://")
    assert "mlflow server" in head_cmds and "MLFLOW_TRACKING_URI=" in head_cmds
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:" in " ".join(cfg["worker_start_ray_commands"])

    # token auth on every node; the token file comes from the submitter's machine, not from the repo
    if SETTINGS["token_auth"]:
        assert env["RAY_AUTH_MODE"] == "token"
        token_dir = str(Path(env["RAY_AUTH_TOKEN_PATH"]).parent)
        assert cfg["file_mounts"][token_dir].startswith("~")


def test_aws_and_gcp_differ_only_where_clouds_differ():
    aws, gcp = _yaml(LAUNCHERS["aws"]), _yaml(LAUNCHERS["gcp"])
    for key in ("cluster_name", "max_workers", "idle_timeout_minutes", "head_node_type", "file_mounts"):
        assert aws[key] == gcp[key], key
    assert aws["available_node_types"].keys() == gcp["available_node_types"].keys()
    for name, t in aws["available_node_types"].items():
        other = gcp["available_node_types"][name]
        assert (t["min_workers"], t["max_workers"]) == (other["min_workers"], other["max_workers"]), name
        assert t["resources"].get("GPU") == other["resources"].get("GPU"), name


# Ray's schema leaves node_config free-form (it is passed to the cloud API as is). When the cloud SDKs are
# installed (the image has them; the test venv may not), check node_config against the API's own request
# model, offline: botocore's EC2 RunInstances shape, google-api-python-client's bundled Compute discovery doc.


def _ec2_node_config_errors(node_config: dict) -> str:
    botocore_session = pytest.importorskip("botocore.session", reason="botocore not installed")
    from botocore.validate import ParamValidator

    shape = botocore_session.get_session().get_service_model("ec2").operation_model("RunInstances").input_shape
    report = ParamValidator().validate(dict(node_config, MinCount=1, MaxCount=1), shape)
    return report.generate_report() if report.has_errors() else ""


@functools.cache
def _compute_discovery() -> dict:
    googleapiclient = pytest.importorskip("googleapiclient", reason="google-api-python-client not installed")
    import json

    doc = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "compute.v1.json"
    if not doc.exists():
        pytest.skip(f"no bundled Compute discovery document at {doc}")
    return json.loads(doc.read_text())["schemas"]


def _gce_errors(value, schema: dict, path: str = "node_config") -> list[str]:
    """Unknown fields, wrong JSON kinds and enum values against a Compute discovery schema."""
    schemas = _compute_discovery()
    schema = schemas[schema["$ref"]] if "$ref" in schema else schema
    kind = schema.get("type")
    if isinstance(value, dict):
        if "properties" in schema:
            errors = [f"{path}.{k}: unknown field" for k in value if k not in schema["properties"]]
            for k, v in value.items():
                if k in schema["properties"]:
                    errors += _gce_errors(v, schema["properties"][k], f"{path}.{k}")
            return errors
        if "additionalProperties" in schema:
            return [e for k, v in value.items() for e in _gce_errors(v, schema["additionalProperties"], f"{path}.{k}")]
        return [] if kind in (None, "object", "any") else [f"{path}: expected {kind}, got an object"]
    if isinstance(value, list):
        if kind != "array":
            return [f"{path}: expected {kind}, got a list"]
        return [e for i, v in enumerate(value) for e in _gce_errors(v, schema["items"], f"{path}[{i}]")]
    if kind in ("object", "array"):
        return [f"{path}: expected {kind}, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r} not in {schema['enum']}"]
    int64 = schema.get("format") in ("int64", "uint64", "int32", "uint32") or kind == "integer"
    ok = {
        "boolean": isinstance(value, bool),
        "string": isinstance(value, str) or (int64 and isinstance(value, int) and not isinstance(value, bool)),
        "integer": isinstance(value, int) and not isinstance(value, bool),
    }.get(kind, True)
    return [] if ok else [f"{path}: {value!r} is not {kind}"]


def test_aws_node_configs_match_ec2_api():
    for name, t in _yaml(LAUNCHERS["aws"])["available_node_types"].items():
        assert _ec2_node_config_errors(t["node_config"]) == "", name


def test_gcp_node_configs_match_compute_api():
    for name, t in _yaml(LAUNCHERS["gcp"])["available_node_types"].items():
        assert _gce_errors(t["node_config"], {"$ref": "Instance"}) == [], name


def test_broken_node_configs_are_rejected_by_cloud_api_models():
    aws = _yaml(LAUNCHERS["aws"])["available_node_types"]["gpu_1x"]["node_config"]
    gcp = _yaml(LAUNCHERS["gcp"])["available_node_types"]["gpu_1x"]["node_config"]
    checks = []
    if importlib.util.find_spec("botocore"):
        typo = dict(aws, InstanceTyp=aws["InstanceType"])
        wrong = copy.deepcopy(aws)
        wrong["BlockDeviceMappings"][0]["Ebs"]["VolumeSize"] = "200"
        checks += [("aws typo", _ec2_node_config_errors(typo)), ("aws type", _ec2_node_config_errors(wrong))]
    if importlib.util.find_spec("googleapiclient"):
        typo = dict(gcp, machinType=gcp["machineType"])
        wrong = copy.deepcopy(gcp)
        wrong["scheduling"]["automaticRestart"] = "no"
        enum = copy.deepcopy(gcp)
        enum["scheduling"]["provisioningModel"] = "SPOTT"
        checks += [(f"gcp {n}", _gce_errors(c, {"$ref": "Instance"})) for n, c in
                   [("typo", typo), ("type", wrong), ("enum", enum)]]
    if not checks:
        pytest.skip("neither botocore nor google-api-python-client is installed")
    assert all(errors for _, errors in checks), [name for name, errors in checks if not errors]


# --------------------------------------------------------------------------------------------------
# KubeRay: RayCluster and RayJob against the v1.7.0 CRDs
# --------------------------------------------------------------------------------------------------


def _strict(schema):
    """Reject unknown fields like the API server's strict field validation (jsonschema ignores them)."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _crd_validator(kind: str):
    path = CRD_DIR / CRD_FILES[kind]
    if not path.exists():
        pytest.skip(f"KubeRay CRDs not found at {CRD_DIR} (expected ../shared/kuberay-crds beside the checkout)")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    crd = yaml.load(path.read_text(), Loader=loader)
    assert crd["spec"]["names"]["kind"] == kind
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = _strict(v1["schema"]["openAPIV3Schema"])
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def _crd_errors(kind: str, manifest: dict) -> list[str]:
    errors = _crd_validator(kind).iter_errors(manifest)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


@pytest.mark.parametrize("kind", KUBERAY)
def test_kuberay_manifest_matches_crd(kind):
    manifest = _yaml(KUBERAY[kind])
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == kind
    assert _crd_errors(kind, manifest) == []


KUBERAY_BREAKAGES = {
    "RayCluster": {
        "typo-key": (("spec", "workerGroupSpecs", 0), "maxReplicas", "maxReplica"),
        "typo-key-in-pod-template": (("spec", "headGroupSpec", "template", "spec"), "containers", "container"),
        "wrong-type": (("spec", "workerGroupSpecs", 0, "maxReplicas"), None, "8"),
        "wrong-type-rayStartParams": (("spec", "headGroupSpec", "rayStartParams", "num-cpus"), None, 0),
        "bad-enum": (("spec", "autoscalerOptions", "version"), None, "v3"),
    },
    "RayJob": {
        "typo-key": (("spec",), "shutdownAfterJobFinishes", "shutdownAfterJobFinish"),
        "typo-key-in-cluster-spec": (("spec", "rayClusterSpec"), "enableInTreeAutoscaling", "enableInTreeAutoscale"),
        "wrong-type": (("spec", "ttlSecondsAfterFinished"), None, "600"),
        "wrong-type-entrypoint": (("spec", "entrypoint"), None, ["sasi", "ablate"]),
    },
}


def _break(manifest: dict, where: tuple, old_key, new):
    node = manifest
    if old_key is None:  # replace the value at `where`
        *parents, last = where
        for key in parents:
            node = node[key]
        node[last] = new
    else:  # rename key `old_key` of the mapping at `where` to `new`
        for key in where:
            node = node[key]
        node[new] = node.pop(old_key)


@pytest.mark.parametrize(
    "kind,breakage", [(kind, b) for kind, bs in KUBERAY_BREAKAGES.items() for b in bs]
)
def test_broken_kuberay_manifest_is_rejected(kind, breakage):
    manifest = _yaml(KUBERAY[kind])
    _break(manifest, *KUBERAY_BREAKAGES[kind][breakage])
    expected = {"typo": "was unexpected", "wrong": "is not of type", "bad": "is not one of"}[breakage.split("-")[0]]
    errors = _crd_errors(kind, manifest)
    assert any(expected in e for e in errors), f"{kind} with {breakage}: {errors or 'passed the CRD schema'}"


def test_plain_crd_schema_ignores_unknown_fields():
    """Why _strict exists: the CRD schema has no additionalProperties, so a typo'd key passes plain jsonschema
    (the API server would prune it silently, or reject it under kubectl's strict field validation)."""
    _crd_validator("RayJob")  # skips when the CRDs are absent
    crd = yaml.load((CRD_DIR / CRD_FILES["RayJob"]).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    manifest = _yaml(KUBERAY["RayJob"])
    _break(manifest, *KUBERAY_BREAKAGES["RayJob"]["typo-key"])
    assert list(jsonschema.Draft7Validator(v1["schema"]["openAPIV3Schema"]).iter_errors(manifest)) == []
    assert _crd_errors("RayJob", manifest)


def _containers(spec: dict):
    yield "head", spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    for group in spec["workerGroupSpecs"]:
        yield group["groupName"], group["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("kind", KUBERAY)
def test_kuberay_invariants(kind):
    manifest = _yaml(KUBERAY[kind])
    spec = manifest["spec"] if kind == "RayCluster" else manifest["spec"]["rayClusterSpec"]

    assert spec["rayVersion"] == ray.__version__
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["autoscalerOptions"]["version"] == "v2"
    assert spec["autoscalerOptions"]["idleTimeoutSeconds"] > 0
    if SETTINGS["token_auth"]:
        assert spec["authOptions"] == {"mode": "token", "secretName": SETTINGS["kuberay"]["auth_secret"]}

    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # no training on the head
    assert common.DRIVER_RESOURCE in head["rayStartParams"]["resources"]
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]

    for name, container in _containers(spec):
        assert _image_ray_version(container["image"]) == ray.__version__, name
        assert container["image"] == common.cluster_image(SETTINGS), name
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert SHARED_URI.match(env["SASI_STORAGE"]), name
        assert env["MLFLOW_TRACKING_URI"] == common.k8s_tracking_uri(SETTINGS), name

    groups = spec["workerGroupSpecs"]
    assert groups
    for g in groups:
        assert g["minReplicas"] == 0 and g["replicas"] == 0, g["groupName"]  # scale from zero
        assert g["maxReplicas"] >= 1, g["groupName"]
        pod = g["template"]["spec"]
        limits = pod["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1, g["groupName"]
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"]), g["groupName"]
    assert sum(g["minReplicas"] for g in groups) <= sum(g["maxReplicas"] for g in groups)


def test_rayjob_runs_one_suite_and_tears_down():
    job = _yaml(KUBERAY["RayJob"])["spec"]
    cluster = _yaml(KUBERAY["RayCluster"])["spec"]
    assert job["shutdownAfterJobFinishes"] is True
    assert job["ttlSecondsAfterFinished"] >= 0 and job["activeDeadlineSeconds"] > 0
    assert job["submissionMode"] == "K8sJobMode"
    assert job["rayClusterSpec"] == cluster  # one definition of the cluster, shared by both manifests

    argv = shlex.split(job["entrypoint"])
    storage = argv[argv.index("--storage") + 1]
    assert SHARED_URI.match(storage), storage
    assert argv[argv.index("--tracking-uri") + 1] == common.k8s_tracking_uri(SETTINGS)

    renv = yaml.safe_load(job["runtimeEnvYAML"])
    assert renv == common.runtime_env(SETTINGS, working_dir=common.IMAGE_WORKDIR)


def test_suite_entrypoint_exists():
    """`sasi ablate ablations/<suite>.yaml`: the console script is declared and the suite file exists."""
    argv = shlex.split(_yaml(KUBERAY["RayJob"])["spec"]["entrypoint"])
    assert argv[0] in PYPROJECT["project"]["scripts"], f"console script {argv[0]!r} not in [project.scripts]"
    assert argv[1] == "ablate"
    suite = REPO / argv[2]
    assert argv[2] == common.suite_path(SETTINGS)
    assert suite.is_file(), f"{argv[2]} (suite run by cluster/kuberay/rayjob.yaml) does not exist"


def test_mlflow_service_matches_tracking_uri():
    docs = {d["kind"]: d for d in yaml.safe_load_all((CLUSTER / "kuberay/mlflow.yaml").read_text())}
    uri = common.k8s_tracking_uri(SETTINGS)
    host, port = uri.removeprefix("http://").split(":")
    service, deploy = docs["Service"], docs["Deployment"]
    assert service["metadata"]["name"] == host
    assert service["metadata"]["namespace"] == SETTINGS["kuberay"]["namespace"]
    assert service["spec"]["ports"][0]["port"] == int(port)
    assert service["spec"]["selector"] == deploy["spec"]["template"]["metadata"]["labels"]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == common.cluster_image(SETTINGS)  # full mlflow comes from the [ui] extra
    argv = container["command"]
    assert argv[:2] == ["mlflow", "server"]
    assert SHARED_URI.match(argv[argv.index("--artifacts-destination") + 1])
    assert argv[argv.index("--port") + 1] == port
    assert host in argv[argv.index("--allowed-hosts") + 1].split(",")
    assert docs["ServiceAccount"]["metadata"]["name"] == SETTINGS["kuberay"]["service_account"]


# --------------------------------------------------------------------------------------------------
# runtime env and Dockerfile
# --------------------------------------------------------------------------------------------------


def test_runtime_env_is_valid_for_ray():
    from ray.runtime_env import RuntimeEnv

    renv = _yaml("runtime_env.yaml")
    assert set(renv) <= set(RuntimeEnv.known_fields), set(renv) - set(RuntimeEnv.known_fields)
    RuntimeEnv(**renv)  # type-checks the known fields
    assert renv["working_dir"] == "."
    assert {".git", ".venv", "data"} <= set(renv["excludes"])
    assert int(renv["env_vars"]["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"]) >= 300


def test_broken_runtime_env_is_rejected():
    from ray.runtime_env import RuntimeEnv

    renv = _yaml("runtime_env.yaml")
    with pytest.raises(TypeError):
        RuntimeEnv(**dict(renv, env_vars={"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": 1200}))
    typo = dict(renv, working_dirr=renv["working_dir"])
    assert not set(typo) <= set(RuntimeEnv.known_fields)


def test_dockerfile_builds_on_the_pinned_ray_gpu_image():
    lines = (CLUSTER / "Dockerfile").read_text().splitlines()
    (from_line,) = [ln for ln in lines if ln.startswith("FROM ")]
    assert from_line == f"FROM rayproject/ray:{ray.__version__}-{SETTINGS['python_tag']}-gpu"
    text = "\n".join(lines)
    assert "ray-ml" not in from_line and "pip install --no-cache-dir --no-deps ." in text
    ignore = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", "data"} <= set(ignore)
