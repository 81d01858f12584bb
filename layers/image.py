"""Image config, manifest and index documents, as canonical bytes ready to hash and push unchanged."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from .descriptor import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Descriptor, canonical_json


@dataclass(frozen=True)
class Layer:
    """A finished layer blob: its descriptor plus the uncompressed digest the config records."""

    descriptor: Descriptor
    diff_id: str
    comment: str  # what the layer holds, for `history` and `cogbuild show`
    library_dirs: tuple[str, ...] = ()  # directories of shared libraries the image's loader must search


@dataclass(frozen=True)
class RuntimeConfig:
    """The parts of the image config that say how to run it (OCI image-spec `config`)."""

    entrypoint: list[str]
    env: dict[str, str]
    user: str
    working_dir: str = "/src"
    exposed_ports: tuple[str, ...] = ("5000/tcp",)
    labels: dict[str, str] = field(default_factory=dict)
    cmd: list[str] | None = None


# containerd refuses to create a container from an image with a label whose key and value together exceed
# this many bytes (`ctr run` copies image labels to the container; its CRI plugin drops them instead).
LABEL_LIMIT = 4096


def fit_labels(labels: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(labels for the config, the ones too large for any runtime's labels): the latter belong in the
    manifest's annotations, which runtimes keep as data and never validate as container labels."""
    small = {k: v for k, v in labels.items() if len(k.encode()) + len(v.encode()) <= LABEL_LIMIT}
    return small, {k: v for k, v in labels.items() if k not in small}


def image_metadata(manifest: dict[str, Any], config: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The value of the first of `keys` the image carries: a config label, or the manifest annotation
    that `fit_labels` moved it to."""
    labels = (config.get("config") or {}).get("Labels") or {}
    annotations = manifest.get("annotations") or {}
    for key in keys:
        for found in (labels, annotations):
            if found.get(key):
                return found[key]
    return None


def rfc3339(epoch: int) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def config_bytes(layers: list[Layer], runtime: RuntimeConfig, *, os: str, architecture: str,
                 variant: str | None = None, created: int = 0) -> bytes:
    config: dict[str, Any] = {
        "Entrypoint": runtime.entrypoint,
        "Env": [f"{k}={v}" for k, v in runtime.env.items()],
        "ExposedPorts": {port: {} for port in runtime.exposed_ports},
        "Labels": dict(sorted(runtime.labels.items())),
        "User": runtime.user,
        "WorkingDir": runtime.working_dir,
    }
    if runtime.cmd is not None:
        config["Cmd"] = runtime.cmd
    doc: dict[str, Any] = {
        "architecture": architecture,
        "config": config,
        "created": rfc3339(created),
        "history": [{"created": rfc3339(created), "created_by": f"cogbuild: {layer.comment}"}
                    for layer in layers],
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    if variant:
        doc["variant"] = variant
    return canonical_json(doc)


def manifest_bytes(config: Descriptor, layers: list[Layer], annotations: dict[str, str] | None = None
                   ) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [layer.descriptor.to_json() for layer in layers],
    }
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    return canonical_json(doc)


def index_bytes(manifests: list[Descriptor], annotations: dict[str, str] | None = None) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [m.to_json() for m in manifests],
    }
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    return canonical_json(doc)


def config_descriptor(data: bytes) -> Descriptor:
    return Descriptor.of(OCI_CONFIG, data)


def manifest_descriptor(data: bytes, platform: dict[str, str] | None = None,
                        annotations: dict[str, str] | None = None) -> Descriptor:
    return Descriptor.of(OCI_MANIFEST, data, platform=platform, annotations=annotations or {})
