"""A registry repository as a Nix-style binary cache: finished layers by input key, and pinned inputs by hash.

Layers: the tag `layer-<key>` names a small artifact manifest (empty config, one layer: the composed
layer, whose annotations carry what an image config needs, e.g. its diff_id). The manifest is canonical
JSON of the layer alone, so two builders that composed the same key PUT the same bytes: writers that race
need no coordination. A key is whatever the caller hashes its inputs to; this module knows OCI, not models.

Documents: the tag `<kind>-<key>` names a manifest whose one layer is a small document (e.g. JSON a
builder computed from its inputs); the manifest also carries the document inline, in an annotation, so a
lookup is one GET, and the inline copy is checked against the layer's digest before it is believed.

Inputs: a download pinned by sha256 is the blob `sha256:<that hash>`; a manifest tagged `inputs-<hash of the
set>` lists the blobs one build mirrored, so registry garbage collection keeps them.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from typing import TYPE_CHECKING, Sequence

from cogbuild.layers.descriptor import EMPTY_JSON, OCI_MANIFEST, Descriptor, Digest, InvalidDescriptor, sha256_digest

from .errors import OCIError
from .reference import Reference, parse_reference

if TYPE_CHECKING:
    from .client import RegistryClient
    from .light import LightClient
    from .layout import Layout
    from .transfer import TransferStats

LAYER_ARTIFACT = "application/vnd.cogbuild.cache.layer.v1"
INPUTS_ARTIFACT = "application/vnd.cogbuild.cache.inputs.v1"
DOCUMENT_ARTIFACT = "application/vnd.cogbuild.cache.document.v1"
DOCUMENT_MEDIA_TYPE = "application/json"
INLINE = "run.cog.inline"  # the document itself, on the manifest: one GET finds it
INPUT_MEDIA_TYPE = "application/octet-stream"
_KEY = re.compile(r"[0-9a-f]{64}")
_KIND = re.compile(r"[a-z][a-z0-9]{0,15}")
ATTEMPTS = 3  # a cache that keeps failing costs more than it saves: give up sooner than a push would


class CacheRepository:
    """One repository (`registry/name`, no tag) used as a shared cache by any number of builders."""

    def __init__(self, text: str, *, insecure: bool = False) -> None:
        self.ref = _repository_reference(text)
        self.name = self.ref.name
        self.insecure = insecure

    # Lookups go through the light client (standard library only); requests, urllib3 and the upload code
    # (~0.3 s of imports) load only when something is uploaded or downloaded.
    @cached_property
    def light(self) -> LightClient:
        from .http_policy import RetryPolicy
        from .light import LightClient

        return LightClient(self.ref.registry, self.ref.api_host, insecure=self.insecure,
                           policy=RetryPolicy.default().with_attempts(ATTEMPTS))

    @cached_property
    def client(self) -> RegistryClient:
        from .client import RegistryClient
        from .http_policy import RetryPolicy

        return RegistryClient(self.ref.registry, self.ref.api_host, insecure=self.insecure,
                              policy=RetryPolicy.default().with_attempts(ATTEMPTS))

    @cached_property
    def stats(self) -> TransferStats:
        from .transfer import TransferStats

        return TransferStats()

    # -- layers ---------------------------------------------------------------------------------
    def lookup(self, key: str) -> Descriptor | None:
        """The layer cached under `key` (its annotations as published), or None (also for a malformed entry)."""
        found = self._entry(LAYER_ARTIFACT, layer_tag(key), f"cached layer {key[:12]}")
        return found[1] if found else None

    def publish(self, layout: Layout, key: str, layer: Descriptor) -> None:
        """Upload the layer blob (unless the repository has it) and tag its entry `layer-<key>`."""
        self._push_blobs(layout, [layer])
        self._put_artifact(LAYER_ARTIFACT, [layer], layer_tag(key))

    # -- documents ------------------------------------------------------------------------------
    def lookup_document(self, kind: str, key: str) -> bytes | None:
        """The document published under (`kind`, `key`), checked against its digest; None when absent or
        not what `publish_document` writes."""
        found = self._entry(DOCUMENT_ARTIFACT, document_tag(kind, key), f"cached {kind} {key[:12]}")
        if found is None:
            return None
        inline, desc = found
        data = inline.get(INLINE, "").encode()
        return data if Descriptor.of(desc.media_type, data) == desc else None

    def publish_document(self, kind: str, key: str, data: bytes) -> None:
        """Upload `data` and tag its entry `<kind>-<key>`; the same document always gives the same bytes."""
        from .referrers import push_small_blob

        push_small_blob(self.client, self.ref.repository, data)
        self._put_artifact(DOCUMENT_ARTIFACT, [Descriptor.of(DOCUMENT_MEDIA_TYPE, data)], document_tag(kind, key),
                           {INLINE: data.decode()})

    # -- inputs ---------------------------------------------------------------------------------
    def mirror(self, source: Layout, sha256s: Sequence[str]) -> None:
        """Upload downloads (blobs of `source` named by their sha256) and one manifest that keeps them."""
        hashes = sorted(set(sha256s))
        if not hashes:
            return
        blobs = [Descriptor(INPUT_MEDIA_TYPE, Digest(f"sha256:{h}"), source.blob_path(f"sha256:{h}").stat().st_size)
                 for h in hashes]
        self._push_blobs(source, blobs)
        self._put_artifact(INPUTS_ARTIFACT, blobs, "inputs-" + sha256_digest("\n".join(hashes).encode()).hex)

    def fetch(self, digest: str, size: int, into: Layout) -> bool:
        """Download blob `digest` into `into`, verified; False when this repository does not have it."""
        held = self.light.blob_size(self.ref.repository, digest)
        if held is None:
            return False
        from .transfer import download_blob

        size = size or held
        download_blob(self.client, self.ref.repository, Descriptor(INPUT_MEDIA_TYPE, Digest(digest), size), into,
                      stats=self.stats)
        return True

    # -- shared ---------------------------------------------------------------------------------
    def _entry(self, artifact_type: str, tag: str, what: str) -> tuple[dict[str, str], Descriptor] | None:
        """The manifest's annotations and its one layer, when `tag` names an entry of `artifact_type`.

        An entry that is not what this module writes counts as a miss: the next publish replaces it.
        """
        # Every entry is an OCI manifest: no need to accept more.
        answer = self.light.ask("GET", self.ref.repository, f"manifests/{tag}", f"look up {what} in",
                                accept=OCI_MANIFEST)
        if answer is None:
            return None
        try:
            doc = json.loads(answer.body)
            annotations = doc.get("annotations") or {}
            if doc.get("artifactType") != artifact_type or len(doc.get("layers", [])) != 1 \
                    or not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
                return None
            return annotations, Descriptor.from_json(doc["layers"][0])
        except (ValueError, AttributeError, TypeError, InvalidDescriptor):
            return None

    def _push_blobs(self, layout: Layout, blobs: list[Descriptor]) -> None:
        from .remote import run_parallel
        from .transfer import BlobPusher

        pusher = BlobPusher(self.client, self.ref.repository, layout, stats=self.stats)
        run_parallel(pusher.push, sorted(blobs, key=lambda b: -b.size), pusher.cancel, "cache")

    def _put_artifact(self, artifact_type: str, blobs: list[Descriptor], tag: str,
                      annotations: dict[str, str] | None = None) -> None:
        from .referrers import artifact_manifest, push_small_blob
        from .remote import put_manifest

        push_small_blob(self.client, self.ref.repository, EMPTY_JSON)
        data = artifact_manifest(artifact_type, blobs, annotations)
        put_manifest(self.client, self.ref.repository, data, Descriptor.of(OCI_MANIFEST, data), tag)


def layer_tag(key: str) -> str:
    return _tag("layer", key)


def document_tag(kind: str, key: str) -> str:
    if not _KIND.fullmatch(kind) or kind in ("layer", "inputs"):
        raise ValueError(f"a document kind is a short lowercase word other than layer and inputs, not {kind!r}")
    return _tag(kind, key)


def _tag(kind: str, key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"a cache key is 64 lowercase hex digits, not {key!r}")
    return f"{kind}-{key}"


def _repository_reference(text: str) -> Reference:
    try:
        ref = parse_reference(text)
    except OCIError as exc:
        raise OCIError(f"the cache repository {text!r} is not a registry reference: {exc}") from None
    if ref.digest or ref.tag:
        raise OCIError(f"the cache repository {text!r} must name a repository without a tag or digest, "
                       "e.g. 127.0.0.1:5000/cogbuild-cache")
    return ref
