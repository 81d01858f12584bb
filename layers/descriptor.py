"""OCI content descriptors and media types: the vocabulary shared by layers/ and registry/."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"  # an artifact's config when it needs none
EMPTY_JSON = b"{}"  # the blob OCI_EMPTY names
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)


# The exact form of each algorithm cogbuild accepts: lowercase hex of the algorithm's full length.
DIGEST_FORMS = {"sha256": 64, "sha512": 128}
_DIGEST = re.compile("|".join(f"{alg}:[0-9a-f]{{{length}}}" for alg, length in DIGEST_FORMS.items()))


class InvalidDescriptor(ValueError):
    """A descriptor from outside (a manifest, an index, a registry's answer) that is malformed."""


class InvalidDigest(InvalidDescriptor):
    """Text that is not a digest in its exact form; the message quotes it (shortened)."""


class Digest(str):
    """A content digest checked to be `sha256:<64 lowercase hex>` (or sha512's exact form).

    Every digest that comes from outside (registry answers, manifests, index.json, archives, lockfiles)
    becomes one of these before it is joined into a path or a URL: such a string holds no `/`, `..` or
    anything else but hex after its algorithm. It is a str, so it compares, hashes and serializes as one.
    """

    __slots__ = ()

    def __new__(cls, text: object) -> "Digest":
        if isinstance(text, Digest):
            return text
        if not is_digest(text):
            shown = repr(text) if len(repr(text)) <= 80 else repr(text)[:77] + "..."
            raise InvalidDigest(f"{shown} is not a digest (expected sha256: and 64 lowercase hex digits)")
        return super().__new__(cls, text)

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def hex(self) -> str:
        return self.partition(":")[2]


def is_digest(text: object) -> bool:
    return isinstance(text, str) and _DIGEST.fullmatch(text) is not None


def is_sha256_hex(text: object) -> bool:
    """A bare sha256 in its exact form (64 lowercase hex), as locks and package indexes record it."""
    return isinstance(text, str) and is_digest(f"sha256:{text}")


def sha256_digest(data: bytes) -> Digest:
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Descriptor:
    """A pointer to content: media type, digest, size (OCI image-spec descriptor).

    Built from untrusted JSON too, so the fields are checked here: a validated digest, a size that is a
    non-negative integer, a media type that is a string.
    """

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: dict[str, str] | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", Digest(self.digest))
        if not isinstance(self.media_type, str):
            raise InvalidDescriptor(f"descriptor {self.digest} has a media type that is not a string")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise InvalidDescriptor(f"descriptor {self.digest} has an invalid size {self.size!r}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = dict(self.platform)
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        return out

    @classmethod
    def from_json(cls, obj: Any) -> "Descriptor":
        """A descriptor from a manifest, an index or a registry's answer; InvalidDescriptor when malformed."""
        if not isinstance(obj, dict):
            raise InvalidDescriptor(f"a descriptor is a JSON object, not {type(obj).__name__}")
        missing = [key for key in ("mediaType", "digest", "size") if key not in obj]
        if missing:
            raise InvalidDescriptor(f"a descriptor lacks {', '.join(missing)}")
        annotations, platform = obj.get("annotations") or {}, obj.get("platform")
        if not isinstance(annotations, dict) or not (platform is None or isinstance(platform, dict)):
            raise InvalidDescriptor(f"descriptor {obj['digest']!r} has malformed annotations or platform")
        return cls(obj["mediaType"], obj["digest"], obj["size"], dict(annotations), platform)

    @classmethod
    def of(cls, media_type: str, data: bytes, **kw: Any) -> "Descriptor":
        return cls(media_type, sha256_digest(data), len(data), **kw)


def children(doc: Any, media_type: str) -> list[Descriptor]:
    """What an index (its manifests) or an image manifest (its config, then its layers) points at.

    The one reader of that structure, for documents from anywhere: a malformed one raises
    InvalidDescriptor, never a KeyError or TypeError. Other media types point at nothing we follow.
    """
    if not isinstance(doc, dict):
        raise InvalidDescriptor(f"a manifest or index is a JSON object, not {type(doc).__name__}")
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests", [])
    elif media_type in MANIFEST_TYPES:
        if "config" not in doc:
            raise InvalidDescriptor("an image manifest lacks its config")
        layers = doc.get("layers", [])
        entries = [doc["config"], *layers] if isinstance(layers, list) else layers
    else:
        return []
    if not isinstance(entries, list):
        raise InvalidDescriptor("a manifest or index lists its content in something other than a JSON array")
    return [Descriptor.from_json(entry) for entry in entries]


def canonical_json(obj: Any) -> bytes:
    """The one serialization of manifests and configs: sorted keys, no spaces, UTF-8.

    These bytes are hashed once and pushed as they are, so the digest never changes in transit.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
