"""Kubernetes manifests for a model image: a Deployment and a Service, or an Indexed Job over JSONL inputs.

The probes read the runtime's /health-check with `?ok=STATUS,…` (503 outside the list), so each probe asks
its own question: the startup probe waits out setup(), readiness is READY (a BUSY pod with every slot taken
leaves the Service until a slot frees), and liveness fails only when the server cannot serve again
(SETUP_FAILED after a worker restart, DEFUNCT) — it answers while predictions run, so a busy worker is
never killed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from cog.server.service import Settings
from cog.server.webhooks import DRAIN_TIMEOUT

from .errors import UsageError
from .images import Image

DEFAULT_PORT = 5000  # the runtime's, unless the image sets PORT
SERVER_MODULE, BATCH_MODULE = "cog.server.http", "cog.command.batch"
INPUTS_DIR, INPUTS_FILE = "/inputs", "inputs.jsonl"
CONFIGMAP_LIMIT = 1024 * 1024  # the API server refuses a larger ConfigMap
PROBE_PERIOD = 10
PROBE_TIMEOUT = 10  # longer than the runtime's COG_HEALTHCHECK_TIMEOUT (5 s) for a model's own healthcheck()
GRACE_MARGIN = 15  # seconds beyond the runtime's drain for the worker to stop and the process to exit
EXIT_SOME_FAILED, EXIT_BAD_INPUTS = 3, 2  # cog.command.batch's exit codes
GPU_RESOURCE = "nvidia.com/gpu"
# The label NVIDIA's GPU feature discovery (and the GPU operator) puts on GPU nodes, and the taint that
# managed clusters (GKE, AKS) and most GPU node pools put on them.
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATIONS = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class ModelImage:
    """What the manifests need to know of the image: read from its config, never guessed."""

    reference: str  # REPOSITORY@sha256:…, the exact manifest a node pulls
    variant: str  # cpu or gpu
    uid: int
    gid: int
    port: int
    concurrency: int  # predictions one pod runs at once (cog.yaml's concurrency.max), for the batch runner
    drain_seconds: float  # how long the runtime may take to stop after SIGTERM
    entrypoint: list[str]

    @classmethod
    def of(cls, image: Image, repository: str) -> ModelImage:
        config = image.config.get("config") or {}
        env = image.env
        uid, gid = _user_ids(config.get("User") or "", image.name)
        grace = _number(env.get("COG_SHUTDOWN_GRACE"), Settings.shutdown_grace)
        return cls(
            reference=f"{repository}@{image.manifest.digest}",
            variant=image.variant,
            uid=uid, gid=gid,
            port=int(_number(env.get("PORT"), DEFAULT_PORT)),
            concurrency=image.concurrency,
            drain_seconds=grace + _number(env.get("COG_CANCEL_GRACE"), Settings.cancel_grace) + DRAIN_TIMEOUT,
            entrypoint=list(config.get("Entrypoint") or []),
        )


def _user_ids(user: str, name: str) -> tuple[int, int]:
    """The config's User as numbers (Kubernetes checks runAsNonRoot only against numbers)."""
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or int(uid) == 0 or (gid and not gid.isdigit()):
        raise UsageError(f"the image {name} runs as user {user or 'root'!r}, not a numeric non-root uid; "
                         "rebuild it with cogbuild, whose images run as uid 1000")
    return int(uid), int(gid or uid)


def _number(text: str | None, default: float) -> float:
    try:
        return float(text) if text else default
    except ValueError:
        return default  # the runtime refuses a malformed value at start; the default keeps the manifest sane


@dataclass
class Deployment:
    """The choices a user makes on the command line."""

    name: str
    namespace: str | None = None
    replicas: int = 1
    service_port: int = 80
    gpus: int = 1
    setup_timeout: int = 1800  # seconds the startup probe allows for setup() (weights downloads included)
    node_selector: dict[str, str] = field(default_factory=dict)  # for the gpu variant: GPU_NODE_SELECTOR

    def __post_init__(self) -> None:
        if not _DNS_LABEL.fullmatch(self.name):
            raise UsageError(f"--name {self.name!r} is not a Kubernetes name (lowercase letters, digits and '-', "
                             "at most 63, starting and ending with a letter or digit)")


def default_name(repository: str) -> str:
    """A Kubernetes name from the repository's last path component (`me/My_Model` -> `my-model`)."""
    last = repository.rstrip("/").rpartition("/")[2].lower()
    return re.sub(r"[^a-z0-9]+", "-", last).strip("-")[:63].strip("-") or "model"


def service_manifests(model: ModelImage, choice: Deployment) -> list[dict]:
    """A Deployment serving the model and a ClusterIP Service in front of it."""
    container = _container(model, choice)
    container["ports"] = [{"name": "http", "containerPort": model.port}]
    container.update(_probes(choice.setup_timeout))
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(choice.name, choice),
        "spec": {
            "replicas": choice.replicas,
            "selector": {"matchLabels": _selector(choice.name)},
            "template": {"metadata": {"labels": _labels(choice.name)}, "spec": _pod_spec(model, choice, container)},
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": _metadata(choice.name, choice),
        "spec": {"type": "ClusterIP", "selector": _selector(choice.name),
                 "ports": [{"name": "http", "port": choice.service_port, "targetPort": "http"}]},
    }
    return [deployment, service]


def job_manifests(model: ModelImage, choice: Deployment, inputs_jsonl: str, shards: int) -> list[dict]:
    """A ConfigMap holding the inputs and an Indexed Job whose pods each run one shard of them through
    the image's batch runner; results are JSON lines on each pod's stdout (`kubectl logs`)."""
    if len(inputs_jsonl.encode()) > CONFIGMAP_LIMIT:
        raise UsageError(f"the inputs take {len(inputs_jsonl.encode())} bytes, more than the 1 MiB a ConfigMap "
                         "holds; split them into several jobs or pass large values as URLs")
    if model.entrypoint[-2:] != ["-m", SERVER_MODULE]:
        raise UsageError(f"the image {model.reference} does not start cogbuild's runtime (its entrypoint is "
                         f"{json.dumps(model.entrypoint)}); --job needs an image that cogbuild built")
    inputs_name = f"{choice.name}-inputs"
    container = _container(model, choice)
    container["command"] = model.entrypoint[:-1] + [BATCH_MODULE]
    container["args"] = [f"{INPUTS_DIR}/{INPUTS_FILE}", "--shards", str(shards), "--concurrency",
                         str(model.concurrency)]
    container["volumeMounts"] = [{"name": "inputs", "mountPath": INPUTS_DIR, "readOnly": True}]
    pod = _pod_spec(model, choice, container)
    pod["restartPolicy"] = "Never"
    pod["volumes"] = [{"name": "inputs", "configMap": {"name": inputs_name}}]
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(inputs_name, choice),
                 "data": {INPUTS_FILE: inputs_jsonl}}
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(choice.name, choice),
        "spec": {
            "completionMode": "Indexed", "completions": shards, "parallelism": shards,
            "backoffLimitPerIndex": 2,  # a shard is retried when its pod is lost or setup() fails
            "podFailurePolicy": {"rules": [
                # Predictions ran and some failed (each in its result line): rerunning would repeat them.
                {"action": "FailIndex", "onExitCodes": {"containerName": "model", "operator": "In",
                                                         "values": [EXIT_SOME_FAILED]}},
                {"action": "FailJob", "onExitCodes": {"containerName": "model", "operator": "In",
                                                       "values": [EXIT_BAD_INPUTS]}},
                # Evicted or preempted: retry without counting it against the shard.
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {"metadata": {"labels": _labels(choice.name)}, "spec": pod},
        },
    }
    return [configmap, job]


def _labels(name: str) -> dict[str, str]:
    return {**_selector(name), "app.kubernetes.io/managed-by": "cogbuild"}


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


def _metadata(name: str, choice: Deployment) -> dict:
    namespace = {"namespace": choice.namespace} if choice.namespace else {}
    return {"name": name, **namespace, "labels": _labels(choice.name)}


def _container(model: ModelImage, choice: Deployment) -> dict:
    container = {
        "name": "model",
        "image": model.reference,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if model.variant == "gpu":
        container["resources"] = {"limits": {GPU_RESOURCE: choice.gpus}}
    return container


def _pod_spec(model: ModelImage, choice: Deployment, container: dict) -> dict:
    spec = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": model.uid, "runAsGroup": model.gid,
                            "fsGroup": model.gid, "seccompProfile": {"type": "RuntimeDefault"}},
        # SIGTERM starts the runtime's drain: in-flight predictions finish, then webhooks are flushed.
        "terminationGracePeriodSeconds": math.ceil(model.drain_seconds) + GRACE_MARGIN,
        "containers": [container],
    }
    if model.variant == "gpu":
        spec["nodeSelector"] = choice.node_selector or dict(GPU_NODE_SELECTOR)
        spec["tolerations"] = [dict(t) for t in GPU_TOLERATIONS]
    elif choice.node_selector:
        spec["nodeSelector"] = choice.node_selector
    return spec


def _probes(setup_timeout: int) -> dict:
    def probe(statuses: str, period: int, failures: int) -> dict:
        return {"httpGet": {"path": f"/health-check?ok={statuses}", "port": "http"}, "periodSeconds": period,
                "timeoutSeconds": PROBE_TIMEOUT, "failureThreshold": failures}

    return {
        "startupProbe": probe("READY,BUSY", PROBE_PERIOD, max(1, math.ceil(setup_timeout / PROBE_PERIOD))),
        "readinessProbe": probe("READY", 5, 1),
        "livenessProbe": probe("STARTING,READY,BUSY,UNHEALTHY", PROBE_PERIOD, 3),
    }
