"""Artifacts attached to an image (OCI 1.1 referrers), whatever they hold (cogbuild attaches the lock and
an SBOM: cogbuild/lock_artifacts.py).

An artifact is an image manifest with `artifactType`, the empty config and `subject` pointing at the
image. Registries with the referrers API index it themselves (they answer the PUT with `OCI-Subject`);
for the others (Debian's docker-registry 2.8 among them) the spec's fallback applies: an index tagged
`sha256-<hex of the subject>` lists the artifacts, and it is updated on every attach.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

from cogbuild.layers.descriptor import (EMPTY_JSON, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, Descriptor,
                                        InvalidDescriptor, canonical_json, sha256_digest)

from .client import RegistryClient, RegistryError
from .reference import Reference, fallback_tag, parse_reference
from .remote import put_manifest
from .transfer import with_query

TITLE = "org.opencontainers.image.title"


@dataclass(frozen=True)
class ArtifactFile:
    name: str
    media_type: str
    data: bytes
    annotations: dict[str, str] = field(default_factory=dict)  # besides the title, e.g. a signature


def attach_artifact(ref: str | Reference, subject: Descriptor, artifact_type: str,
                    files: Sequence[ArtifactFile], *, annotations: dict[str, str] | None = None,
                    insecure: bool = False, client: RegistryClient | None = None) -> Descriptor:
    """Push `files` as one artifact whose subject is the image `subject`; return its descriptor."""
    ref = parse_reference(ref)
    client = client or RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    data, desc = _artifact_manifest(subject, artifact_type, files, annotations)
    if _listed_in_fallback_index(client, ref, subject.digest, desc):
        return desc  # attached before: the index lists an artifact only after its manifest and blobs went up
    for item in files:
        push_small_blob(client, ref.repository, item.data)
    push_small_blob(client, ref.repository, EMPTY_JSON)
    response = client.request(
        "PUT", client.url(f"{ref.repository}/manifests/{desc.digest}"), repository=ref.repository, ok=(201,),
        headers={"Content-Type": OCI_MANIFEST}, body=data, action=f"attach a {artifact_type} artifact to")
    if response.headers.get("OCI-Subject") != subject.digest:
        _add_to_fallback_index(client, ref, subject.digest, desc, artifact_type)
    return desc


def _artifact_manifest(subject: Descriptor, artifact_type: str, files: Sequence[ArtifactFile],
                       annotations: dict[str, str] | None) -> tuple[bytes, Descriptor]:
    """The artifact's manifest (canonical JSON, so the same files give the same digest) and its descriptor."""
    layers = [Descriptor.of(item.media_type, item.data, annotations={TITLE: item.name, **item.annotations})
              for item in files]
    data = artifact_manifest(artifact_type, layers, annotations, subject=subject)
    return data, Descriptor(OCI_MANIFEST, sha256_digest(data), len(data), annotations=dict(annotations or {}))


def artifact_manifest(artifact_type: str, blobs: Sequence[Descriptor], annotations: dict[str, str] | None = None,
                      *, subject: Descriptor | None = None) -> bytes:
    """The one way an artifact manifest is made (attached artifacts here, cache entries in binary_cache):
    the empty config, `blobs` as its layers, canonical JSON of its content alone (no time, no host), so
    the same content always gives the same bytes and digest."""
    doc = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": Descriptor.of(OCI_EMPTY, EMPTY_JSON).to_json(), "layers": [b.to_json() for b in blobs],
    }
    if subject is not None:
        doc["subject"] = Descriptor(subject.media_type, subject.digest, subject.size).to_json()
    if annotations:
        doc["annotations"] = dict(annotations)
    return canonical_json(doc)


def _listed_in_fallback_index(client: RegistryClient, ref: Reference, subject_digest: str,
                              desc: Descriptor) -> bool:
    index = _fetch_fallback_index(client, ref, subject_digest) or {}
    entries = index.get("manifests")
    return isinstance(entries, list) and any(isinstance(m, dict) and m.get("digest") == desc.digest
                                             for m in entries)


def find_referrers(ref: str | Reference, subject_digest: str, *, artifact_type: str | None = None,
                   insecure: bool = False, client: RegistryClient | None = None) -> list[Descriptor]:
    """Artifacts attached to `subject_digest`: the referrers API, else the fallback tag."""
    ref = parse_reference(ref)
    client = client or RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    response = client.request(
        "GET", client.url(f"{ref.repository}/referrers/{subject_digest}"), repository=ref.repository,
        ok=(200, 404), headers={"Accept": OCI_INDEX}, action="list artifacts attached to an image in")
    index = _json_object(response.content, ref, "its referrers list") if response.status_code == 200 else None
    if index is None or not index.get("manifests"):
        index = _fetch_fallback_index(client, ref, subject_digest) or {"manifests": []}
    entries = index.get("manifests", [])
    try:
        if not isinstance(entries, list):
            raise InvalidDescriptor("its manifests are not a JSON array")
        found = [_referrer(m) for m in entries]
    except InvalidDescriptor as exc:
        raise RegistryError(f"the artifacts attached to {ref} are listed in a malformed index ({exc})") from None
    return [d for d, kind in found if artifact_type is None or kind == artifact_type]


def _json_object(data: bytes, ref: Reference, what: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise RegistryError(f"registry {ref.registry} answered with something other than a JSON object for "
                            f"{what} in {ref.repository}")
    return doc


def _referrer(entry: dict) -> tuple[Descriptor, str | None]:
    desc = Descriptor.from_json(entry)
    kind = entry.get("artifactType")
    if isinstance(kind, str) and kind:
        desc.annotations.setdefault("artifactType", kind)  # kept visible to callers that only see descriptors
    return desc, kind


def push_small_blob(client: RegistryClient, repository: str, data: bytes) -> None:
    digest = sha256_digest(data)
    if _has_blob(client, repository, digest):
        return
    try:
        start = client.request("POST", client.url(f"{repository}/blobs/uploads/"), repository=repository,
                               ok=(202,), action="start uploading an artifact to")
        client.request("PUT", with_query(client.resolve_location(start), digest=digest), repository=repository,
                       ok=(201,), headers={"Content-Type": "application/octet-stream"}, body=data,
                       action="upload an artifact to")
    except RegistryError:
        # Concurrent writers of the same bytes race to commit them (distribution answers one of them
        # DIGEST_INVALID); what matters is that the repository has the blob now.
        if not _has_blob(client, repository, digest):
            raise


def _has_blob(client: RegistryClient, repository: str, digest: str) -> bool:
    head = client.request("HEAD", client.url(f"{repository}/blobs/{digest}"), repository=repository,
                          ok=(200, 404), action=f"check blob {digest[:19]} in")
    return head.status_code == 200


def _fetch_fallback_index(client: RegistryClient, ref: Reference, subject_digest: str) -> dict | None:
    response = client.request(
        "GET", client.url(f"{ref.repository}/manifests/{fallback_tag(subject_digest)}"),
        repository=ref.repository, ok=(200, 404), headers={"Accept": OCI_INDEX},
        action="read the referrers tag of")
    if response.status_code == 404:
        return None
    return _json_object(response.content, ref, f"the referrers tag {fallback_tag(subject_digest)}")


def _add_to_fallback_index(client: RegistryClient, ref: Reference, subject_digest: str, desc: Descriptor,
                           artifact_type: str) -> None:
    index = _fetch_fallback_index(client, ref, subject_digest) or {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                                  "manifests": []}
    entries = [m for m in index.get("manifests", []) if m.get("digest") != desc.digest]
    entry = {**Descriptor(desc.media_type, desc.digest, desc.size, annotations=desc.annotations).to_json(),
             "artifactType": artifact_type}
    index["manifests"] = sorted(entries + [entry], key=lambda m: (m.get("artifactType", ""), m["digest"]))
    data = canonical_json(index)
    put_manifest(client, ref.repository, data, Descriptor.of(OCI_INDEX, data), fallback_tag(subject_digest))
