"""OCI content descriptors and media types: the vocabulary shared by layers/ and registry/."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content: media type, digest, size (OCI image-spec descriptor)."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: dict[str, str] | None = field(default=None, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Descriptor":
        return cls(
            media_type=obj["mediaType"],
            digest=obj["digest"],
            size=int(obj["size"]),
            annotations=dict(obj.get("annotations") or {}),
            platform=obj.get("platform"),
        )

    @classmethod
    def of(cls, media_type: str, data: bytes, **kw: Any) -> "Descriptor":
        return cls(media_type, sha256_digest(data), len(data), **kw)


def canonical_json(obj: Any) -> bytes:
    """The one serialization of manifests and configs: sorted keys, no spaces, UTF-8.

    These bytes are hashed once and pushed as they are, so the digest never changes in transit.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
