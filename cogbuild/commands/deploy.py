"""cogbuild deploy kubernetes: manifests that run a model image on a cluster."""

from __future__ import annotations

import click
import yaml

from ..errors import UsageError
from ..images import find_image
from ..project import open_store
from ..registry.errors import InvalidReference
from ..registry.reference import parse_reference
from ..settings import settings_of
from ..ui import progress_printer, result

DEFAULT_PLATFORM = "linux/amd64"


@click.group("deploy")
def command() -> None:
    """Print manifests that run a model image on a cluster (Kubernetes).

    \b
    Examples:
      cogbuild deploy kubernetes 127.0.0.1:5000/me/hello:v1 | kubectl apply -f -
      cogbuild deploy kubernetes 127.0.0.1:5000/me/hello:v1 --job inputs.jsonl | kubectl apply -f -
    """


@command.command("kubernetes")
@click.argument("ref", metavar="REF")
@click.option("--name", help="Name of the Deployment, Service or Job (default: from the repository's name).")
@click.option("-n", "--namespace", help="Namespace of every object (default: none, so kubectl's current one).")
@click.option("--replicas", type=click.IntRange(min=0), default=1, show_default=True, help="Pods serving the model.")
@click.option("--port", type=click.IntRange(1, 65535), default=80, show_default=True,
              help="The Service's port (the pods listen on the image's port, 5000).")
@click.option("--repository", metavar="REGISTRY/REPO",
              help="Where the cluster pulls the image from: needed when REF is a local name or an OCI layout "
                   "(push it there first); default: REF's own repository.")
@click.option("--variant", type=click.Choice(["cpu", "gpu"]), default=None,
              help="Which variant to run (default: gpu when the image has one).")
@click.option("--platform", default=DEFAULT_PLATFORM, show_default=True, help="The cluster nodes' platform.")
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="nvidia.com/gpu per pod (gpu variant).")
@click.option("--node-selector", "node_selectors", multiple=True, metavar="KEY=VALUE",
              help="Schedule on nodes with this label; repeat for more (gpu default: nvidia.com/gpu.present=true).")
@click.option("--setup-timeout", type=click.IntRange(min=1), default=1800, show_default=True, metavar="SECONDS",
              help="How long the startup probe waits for setup() (weights downloads included).")
@click.option("--job", "job_inputs", metavar="INPUTS.jsonl",
              help="Print a ConfigMap of these inputs and an Indexed Job that runs one prediction per line "
                   "instead of a Deployment and a Service.")
@click.option("--shards", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --job: pods that split the inputs between them (the Job's completions).")
@click.pass_context
def kubernetes(ctx: click.Context, ref: str, name: str | None, namespace: str | None, replicas: int, port: int,
               repository: str | None, variant: str | None, platform: str, gpus: int, node_selectors: tuple[str, ...],
               setup_timeout: int, job_inputs: str | None, shards: int) -> None:
    """Print Kubernetes manifests (YAML) for the model image REF, pinned by digest.

    REF is a registry reference (only its manifests and configs are read, never its layers), a local store
    name or an OCI layout (both with --repository, where you pushed it). Without --job: a Deployment whose
    probes follow the model's /health-check and a Service. With --job: a ConfigMap holding the inputs
    and an Indexed Job whose pods print one JSON result a line (`kubectl logs`).

    \b
    Examples:
      cogbuild deploy kubernetes 127.0.0.1:5000/me/hello:v1 | kubectl apply -f -
      cogbuild deploy kubernetes hello:latest --repository registry.example.com/me/hello --replicas 3
      cogbuild deploy kubernetes registry.example.com/me/hello:v1 --job inputs.jsonl --shards 4
    """
    from .. import kubernetes as k8s  # loads the runtime's settings for its drain and port

    pull_from = repository or _registry_repository(ref)
    if pull_from is None:
        raise UsageError(f"{ref} names no registry a cluster could pull from; push it and pass "
                         "--repository REGISTRY/REPO")
    image = _resolve(ctx, ref, variant, platform)
    model = k8s.ModelImage.of(image, pull_from)
    choice = k8s.Deployment(name or k8s.default_name(pull_from), namespace, replicas, port, gpus, setup_timeout,
                            dict(_label(text) for text in node_selectors))
    if job_inputs is None:
        documents = k8s.service_manifests(model, choice)
    else:
        from ..batch import jsonl_text, read_batch_inputs

        items = read_batch_inputs(job_inputs, image.schema)
        documents = k8s.job_manifests(model, choice, jsonl_text(items), min(shards, len(items)))
    result(yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False).rstrip("\n"))


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the inputs in a ConfigMap) as literal blocks, one input a line as in the file."""


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_Dumper.add_representer(str, _string)


def _registry_repository(ref: str) -> str | None:
    """`registry/repository` of a REF that names its registry (a host with a dot or port, or localhost)."""
    host = ref.split("/", 1)[0]
    if ref.startswith(("oci:", "oci-archive:")) or "/" not in ref or not ("." in host or ":" in host
                                                                           or host == "localhost"):
        return None
    try:
        return parse_reference(ref).name
    except InvalidReference:
        return None


def _resolve(ctx: click.Context, ref: str, variant: str | None, platform: str):
    settings = settings_of(ctx)
    image = find_image(ref, open_store(settings.store_root), variant != "cpu", progress_printer(ctx), platform=platform,
                       run=False, verify_key=settings.verify_key, cache_root=settings.cache_root)
    if variant == "gpu" and image.variant != "gpu":
        raise UsageError(f"the image {ref} has no gpu variant for {platform}; build it with `build: gpu: true` "
                         "in cog.yaml and --variant gpu (or all)")
    return image


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--node-selector {text!r} is not KEY=VALUE")
    return key, value
