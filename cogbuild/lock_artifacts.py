"""The lock and an SPDX SBOM travel with a pushed image as OCI referrers (what they hold is cogbuild's
business; registry.referrers only attaches and finds artifacts)."""

from __future__ import annotations

import json
from typing import Sequence

from .layers.descriptor import Descriptor, children
from .registry.client import RegistryClient, RegistryError
from .registry.reference import Reference, parse_reference
from .registry.referrers import ArtifactFile, attach_artifact, find_referrers
from .registry.remote import fetch_small_blob, get_manifest
from .sbom import spdx_sbom

LOCK_ARTIFACT_TYPE = "application/vnd.cogbuild.lock.v1+toml"
SPDX_ARTIFACT_TYPE = "application/spdx+json"


def attach_lock_and_sbom(ref: str | Reference, subject: Descriptor, lock_text: bytes, artifacts: Sequence,
                         *, insecure: bool = False, created: int = 0) -> list[Descriptor]:
    """Attach `cog.lock` and an SPDX SBOM made from its artifacts (dated `created`, the build's
    SOURCE_DATE_EPOCH) to the pushed image `subject`."""
    ref = parse_reference(ref)
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    sbom = spdx_sbom(ref.name, subject.digest, artifacts, created=created)
    return [
        attach_artifact(ref, subject, LOCK_ARTIFACT_TYPE,
                        [ArtifactFile("cog.lock", LOCK_ARTIFACT_TYPE, lock_text)], client=client),
        attach_artifact(ref, subject, SPDX_ARTIFACT_TYPE,
                        [ArtifactFile("sbom.spdx.json", SPDX_ARTIFACT_TYPE, sbom)], client=client),
    ]


def attached_lock(client: RegistryClient, ref: Reference, digest: str) -> bytes | None:
    """The cog.lock attached to the image `digest` as a referrer, if there is one."""
    lock_refs = find_referrers(ref, digest, artifact_type=LOCK_ARTIFACT_TYPE, client=client)
    if not lock_refs:
        return None
    data, lock_manifest = get_manifest(client, ref, lock_refs[0].digest)
    try:
        files = children(json.loads(data), lock_manifest.media_type)[1:]
    except ValueError as exc:  # InvalidDescriptor included
        raise RegistryError(f"the cog.lock artifact of {ref} is malformed ({exc})") from None
    return fetch_small_blob(client, ref, files[0].digest) if files else None
