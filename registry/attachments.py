"""Sigstore attachments: small payloads tied to a manifest digest by the tag `sha256-<hex>.<kind>`.

This is where cosign, skopeo and podman (with `use-sigstore-attachments`) look for signatures (`.sig`)
and attestations (`.att`): an OCI image manifest under that tag whose layers are the payloads, each
carrying its own annotations (e.g. the signature). Attaching appends a layer to what is there, so
signatures by several keys, or by other tools, are kept. Nothing here knows what a payload means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cogbuild.layers.descriptor import OCI_CONFIG, OCI_MANIFEST, Descriptor, InvalidDescriptor, canonical_json

from .client import RegistryClient, RegistryError
from .reference import Reference, parse_reference
from .referrers import fallback_tag, push_small_blob
from .remote import fetch_small_blob, get_manifest, put_manifest

SIGNATURE_KIND = "sig"
ATTESTATION_KIND = "att"


@dataclass(frozen=True)
class Attachment:
    media_type: str
    data: bytes
    annotations: dict[str, str]


def attachment_tag(subject_digest: str, kind: str) -> str:
    return f"{fallback_tag(subject_digest)}.{kind}"


def read_attachments(ref: str | Reference, subject_digest: str, kind: str, *, insecure: bool = False,
                     client: RegistryClient | None = None) -> list[Attachment]:
    """The payloads attached to `subject_digest` under `kind`, each verified against its digest."""
    ref = parse_reference(ref)
    client = client or RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    layers = _attached_layers(client, ref, subject_digest, kind)
    return [Attachment(layer.media_type, fetch_small_blob(client, ref, layer.digest), dict(layer.annotations))
            for layer in layers]


def attach(ref: str | Reference, subject_digest: str, kind: str, item: Attachment, *, insecure: bool = False,
           client: RegistryClient | None = None) -> None:
    """Add `item` to the attachments of `subject_digest` (once: the same payload and annotations are kept)."""
    ref = parse_reference(ref)
    client = client or RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    layers = _attached_layers(client, ref, subject_digest, kind)
    new = Descriptor.of(item.media_type, item.data, annotations=dict(sorted(item.annotations.items())))
    if any(layer.digest == new.digest and layer.annotations == new.annotations for layer in layers):
        return
    layers.append(new)
    push_small_blob(client, ref.repository, item.data)
    # cosign's shape: an image config listing the payloads as its layers, so plain image tools can copy it.
    config = canonical_json({"architecture": "", "os": "", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]}})
    push_small_blob(client, ref.repository, config)
    manifest = canonical_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": Descriptor.of(OCI_CONFIG, config).to_json(),
                               "layers": [layer.to_json() for layer in layers]})
    put_manifest(client, ref.repository, manifest, Descriptor.of(OCI_MANIFEST, manifest),
                 attachment_tag(subject_digest, kind))


def _attached_layers(client: RegistryClient, ref: Reference, subject_digest: str, kind: str) -> list[Descriptor]:
    tag = attachment_tag(subject_digest, kind)
    try:
        data, desc = get_manifest(client, ref, tag)
    except RegistryError as exc:
        if exc.status == 404:
            return []
        raise
    try:
        doc = json.loads(data)
        if desc.media_type != OCI_MANIFEST or not isinstance(doc.get("layers"), list):
            raise InvalidDescriptor("it is not an OCI image manifest with layers")
        return [Descriptor.from_json(layer) for layer in doc["layers"]]
    except (ValueError, AttributeError) as exc:  # InvalidDescriptor is a ValueError
        raise RegistryError(f"the attachment tag {tag} of {ref.name} holds a malformed manifest ({exc})") from None
