"""`cogbuild deploy kubernetes`: the manifests validate against Kubernetes' own schemas (kubernetes-validate
carries them, offline), pin the image by digest and follow what the image says (user, port, variant,
concurrency); a registry REF is resolved through a real registry; bad inputs are one sentence."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from cli_helpers import cogbuild, isolated_env, one_line_error, require
from crafted import SERVER_ENTRYPOINT, model_image_layout
from oci_registry_server import RegistryServer

REPOSITORY = "registry.example.com/me/my_model"
# The newest schemas the package carries, and the oldest release whose Jobs know backoffLimitPerIndex.
KUBERNETES_VERSIONS = (kubernetes_validate.latest_version(), "1.29.0")


def write_layout(root: Path, **kwargs) -> Path:
    for name, data in model_image_layout(**kwargs).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def manifest_digests(layout: Path) -> dict[str, str]:
    """variant -> manifest digest, read from the layout's index."""
    top = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    index = json.loads((layout / "blobs/sha256" / top.split(":")[1]).read_text())
    return {m["annotations"]["run.cog.variant"]: m["digest"] for m in index["manifests"]}


def deploy(tmp_path: Path, *args: str) -> list[dict]:
    run = cogbuild(["deploy", "kubernetes", *args], tmp_path, isolated_env(tmp_path))
    assert run.code == 0, run.err
    documents = list(yaml.safe_load_all(run.out))
    for document in documents:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(document, version, strict=True)  # raises on any unknown or wrong field
    return documents


def deploy_error(tmp_path: Path, *args: str, code: int = 2) -> str:
    run = cogbuild(["deploy", "kubernetes", *args], tmp_path, isolated_env(tmp_path))
    assert run.code == code, run.err
    return one_line_error(run)


def pod_of(document: dict) -> dict:
    return document["spec"]["template"]["spec"]


def test_a_cpu_image_becomes_a_deployment_and_a_service(tmp_path):
    layout = write_layout(tmp_path / "image", env=("COG_SHUTDOWN_GRACE=100",))
    deployment, service = deploy(tmp_path, "oci:image", "--repository", REPOSITORY, "--replicas", "3",
                                 "--port", "8080", "-n", "models")
    assert [deployment["kind"], service["kind"]] == ["Deployment", "Service"]
    assert deployment["metadata"] == service["metadata"] == {
        "name": "my-model", "namespace": "models",
        "labels": {"app.kubernetes.io/name": "my-model", "app.kubernetes.io/managed-by": "cogbuild"}}
    assert deployment["spec"]["replicas"] == 3
    pod = pod_of(deployment)
    container = pod["containers"][0]
    assert container["image"] == f"{REPOSITORY}@{manifest_digests(layout)['cpu']}"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (1000, 1000)
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["terminationGracePeriodSeconds"] > 100 + 30  # the image's drain: its grace, then webhooks
    assert "resources" not in container and "nodeSelector" not in pod and "tolerations" not in pod
    assert container["ports"] == [{"name": "http", "containerPort": 5000}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health-check?ok=READY", "port": "http"}
    assert "BUSY" in container["livenessProbe"]["httpGet"]["path"]
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800  # the default setup allowance
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]


def test_the_gpu_variant_asks_for_gpus_and_gpu_nodes(tmp_path):
    layout = write_layout(tmp_path / "image", variants=("cpu", "gpu"))
    deployment, _ = deploy(tmp_path, "oci:image", "--repository", REPOSITORY, "--gpus", "2", "--name", "big")
    pod = pod_of(deployment)
    assert pod["containers"][0]["image"] == f"{REPOSITORY}@{manifest_digests(layout)['gpu']}"
    assert pod["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert deployment["metadata"]["name"] == "big"

    cpu, _ = deploy(tmp_path, "oci:image", "--repository", REPOSITORY, "--variant", "cpu",
                    "--node-selector", "pool=cheap")
    assert pod_of(cpu)["containers"][0]["image"].endswith(manifest_digests(layout)["cpu"])
    assert pod_of(cpu)["nodeSelector"] == {"pool": "cheap"}


def test_a_registry_reference_is_pinned_to_what_the_registry_holds(tmp_path):
    require("docker-registry")
    from cogbuild.registry.layout import Layout
    from cogbuild.registry.remote import push_image

    layout = write_layout(tmp_path / "image")
    registry = RegistryServer(tmp_path / "registry").start()
    try:
        ref = f"{registry.host}/me/model:v1"
        source = Layout(layout)
        push_image(source, source.resolve("v1"), ref, insecure=True)
        deployment, _ = deploy(tmp_path, ref)
    finally:
        registry.stop()
    assert pod_of(deployment)["containers"][0]["image"] == f"{registry.host}/me/model@{manifest_digests(layout)['cpu']}"
    assert deployment["metadata"]["name"] == "model"
    fetched = {p.name for p in tmp_path.glob("cache/descriptions/blobs/sha256/*")}
    layers = {p.name for p in (layout / "blobs/sha256").iterdir()} - fetched
    assert fetched and layers == {hashlib.sha256(b"model layer").hexdigest()}, "only the layer is not fetched"
    assert not list(tmp_path.glob("store/blobs/sha256/*")), "the store holds no image without its layers"


def test_job_runs_the_inputs_through_the_batch_runner(tmp_path):
    write_layout(tmp_path / "image", env=("COG_MAX_CONCURRENCY=4",))
    (tmp_path / "in.txt").write_text("from a file")
    (tmp_path / "inputs.jsonl").write_text('{"text": "a"}\n\n{"text": "@in.txt", "count": 2}\n{"text": "c"}\n')
    configmap, job = deploy(tmp_path, "oci:image", "--repository", REPOSITORY, "--job", "inputs.jsonl",
                            "--shards", "5")
    lines = configmap["data"]["inputs.jsonl"].split("\n")
    assert json.loads(lines[0]) == {"text": "a"} and lines[1] == ""  # line numbers as in the user's file
    assert json.loads(lines[2])["text"].startswith("data:") and json.loads(lines[2])["count"] == 2
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 3  # one per input
    pod = pod_of(job)
    container = pod["containers"][0]
    assert container["command"] == SERVER_ENTRYPOINT[:-1] + ["cog.command.batch"]
    assert container["args"] == ["/inputs/inputs.jsonl", "--shards", "3", "--concurrency", "4"]
    assert pod["volumes"] == [{"name": "inputs", "configMap": {"name": configmap["metadata"]["name"]}}]
    assert pod["restartPolicy"] == "Never" and pod["securityContext"]["runAsUser"] == 1000
    assert "startupProbe" not in container


@pytest.mark.parametrize("text, problem", [
    ('{"text": "a"}\n{"text": "b"\n', "inputs.jsonl line 2 is not JSON (Expecting ',' delimiter: line 1 column 13 "
                                      "(char 12))"),
    ('{"text": "a"}\n["b"]\n', "inputs.jsonl line 2 is a JSON list, not an object of inputs"),
    ('{"count": 2}\n', 'inputs.jsonl line 1: missing required input "text"'),
    ('\n{"text": "a", "count": "two"}\n', "inputs.jsonl line 2: "),
    ("", "inputs.jsonl holds no inputs (one JSON object a line)"),
])
def test_bad_jsonl_is_one_sentence_naming_the_line(tmp_path, text, problem):
    write_layout(tmp_path / "image")
    (tmp_path / "inputs.jsonl").write_text(text)
    error = deploy_error(tmp_path, "oci:image", "--repository", REPOSITORY, "--job", "inputs.jsonl")
    assert error.startswith(problem), error


def test_bad_requests_are_one_sentence(tmp_path):
    write_layout(tmp_path / "image", variants=("cpu",))
    assert "names no registry" in deploy_error(tmp_path, "oci:image")
    assert "no gpu variant" in deploy_error(tmp_path, "oci:image", "--repository", REPOSITORY, "--variant", "gpu")
    assert "is not a Kubernetes name" in deploy_error(tmp_path, "oci:image", "--repository", REPOSITORY,
                                                      "--name", "My_Model")
    assert "not KEY=VALUE" in deploy_error(tmp_path, "oci:image", "--repository", REPOSITORY, "--node-selector", "x")
    assert "there is no inputs file" in deploy_error(tmp_path, "oci:image", "--repository", REPOSITORY, "--job",
                                                     "absent.jsonl")
    write_layout(tmp_path / "root-image", user="0")
    assert "not a numeric non-root uid" in deploy_error(tmp_path, "oci:root-image", "--repository", REPOSITORY)
    write_layout(tmp_path / "other", entrypoint=["/bin/serve"])
    (tmp_path / "inputs.jsonl").write_text('{"text": "a"}\n')
    assert "--job needs an image that cogbuild built" in deploy_error(tmp_path, "oci:other", "--repository",
                                                                      REPOSITORY, "--job", "inputs.jsonl")


def test_inputs_beyond_a_configmap_are_refused(tmp_path):
    write_layout(tmp_path / "image")
    (tmp_path / "inputs.jsonl").write_text(json.dumps({"text": "x" * 1024 * 1024}) + "\n")
    assert "more than the 1 MiB a ConfigMap holds" in deploy_error(tmp_path, "oci:image", "--repository", REPOSITORY,
                                                                    "--job", "inputs.jsonl")

