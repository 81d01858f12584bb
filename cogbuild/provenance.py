"""Build provenance: an in-toto Statement v1 with a SLSA provenance v1 predicate, signed as a DSSE envelope.

The statement says what was built (the pushed index and each platform manifest) from what: cog.yaml,
the code layer, the git commit when the model is a checkout, and every input `cog.lock` pins with its
sha256. It is signed with the image's signing key and attached where cosign looks (`sha256-<hex>.att`)
and as an OCI referrer, so `cogbuild verify` and `cosign verify-attestation` find it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any, Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from . import __version__
from .lock import Lock
from .plan import CODE_LAYER_COMMENT
from .registry.attachments import ATTESTATION_KIND, Attachment, attach, read_attachments
from .registry.client import RegistryClient
from .imageinfo import describe
from .registry.layout import Layout
from .registry.reference import Reference
from .registry.referrers import ArtifactFile, attach_artifact
from .registry.remote import get_manifest
from .layers.descriptor import Descriptor
from .signing import SIGNATURE_ANNOTATION, SigningError, sign, signature_holds

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "urn:cogbuild:build:v1"
BUILDER_ID = "urn:cogbuild:builder"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
PREDICATE_TYPE_ANNOTATION = "predicateType"  # cosign's annotation on an attestation layer


# -- the statement -----------------------------------------------------------------------------------
def provenance_statement(name: str, subjects: Sequence[str], cog_yaml: Path, code_layers: list[str],
                         lock: Lock) -> dict[str, Any]:
    """The statement for the image `name` whose manifests are `subjects` (the top one first)."""
    source: list[dict[str, Any]] = [
        {"name": "cog.yaml", "digest": {"sha256": hashlib.sha256(cog_yaml.read_bytes()).hexdigest()}},
        *({"name": "code layer", "digest": {"sha256": digest.removeprefix("sha256:")}} for digest in code_layers),
    ]
    commit = _git_commit(cog_yaml.parent)
    if commit:
        source.append(commit)
    inputs = [{"name": f"{a.kind}:{a.name}=={a.version}", "uri": a.url, "digest": {"sha256": a.sha256}}
              for a in lock.artifacts()]
    builder = {"id": BUILDER_ID, "version": {"cogbuild": __version__}}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}} for digest in subjects],
        "predicateType": SLSA_PROVENANCE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"platforms": lock.platforms, "variants": lock.variants,
                                       "python": lock.python_version, "debian": lock.debian_suite},
                "internalParameters": {"lockInputs": lock.inputs},
                "resolvedDependencies": source + inputs,
            },
            "runDetails": {"builder": builder},
        },
    }


def _git_commit(directory: Path) -> dict[str, Any] | None:
    """The checkout's HEAD as a resolved dependency (noting uncommitted changes), or None outside git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    if not head:
        return None
    entry: dict[str, Any] = {"name": "git", "digest": {"gitCommit": head}}
    remote = git("config", "--get", "remote.origin.url")
    if remote:
        entry["uri"] = f"git+{remote}"
    if git("status", "--porcelain", "--", "."):
        entry["annotations"] = {"uncommittedChanges": True}
    return entry


def code_layer_digests(layout: Layout, top: Descriptor) -> list[str]:
    """The code layer of each image under `top`, once each."""
    summary = describe(layout, top, name="")
    found = [layer["digest"] for image in summary["images"] for layer in image["layers"]
             if layer["holds"] == CODE_LAYER_COMMENT]
    return list(dict.fromkeys(found))


# -- DSSE ---------------------------------------------------------------------------------------------
def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed, so the type cannot be swapped under a signature."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def dsse_envelope(key: ec.EllipticCurvePrivateKey, statement: dict[str, Any]) -> bytes:
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": sign(key, pae(IN_TOTO_PAYLOAD_TYPE, payload))}],
    }, sort_keys=True, separators=(",", ":")).encode()


def open_envelope(envelope: bytes, key: ec.EllipticCurvePublicKey) -> dict[str, Any] | None:
    """The statement inside a DSSE envelope signed by `key`; None when no signature of it holds."""
    try:
        doc = json.loads(envelope)
        payload = base64.b64decode(doc["payload"], validate=True)
        signed = any(signature_holds(key, pae(doc["payloadType"], payload), s["sig"]) for s in doc["signatures"])
        if not signed or doc["payloadType"] != IN_TOTO_PAYLOAD_TYPE:
            return None
        statement = json.loads(payload)
    except (ValueError, KeyError, TypeError):
        return None
    return statement if isinstance(statement, dict) else None


# -- attached to images ---------------------------------------------------------------------------------
def attest_image(ref: Reference, top: Descriptor, statement: dict[str, Any], key: ec.EllipticCurvePrivateKey,
                 *, insecure: bool = False) -> None:
    """Sign `statement` and attach it to `top`: under its `.att` tag and as a referrer."""
    envelope = dsse_envelope(key, statement)
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    annotations = {PREDICATE_TYPE_ANNOTATION: statement["predicateType"]}
    # cosign writes an empty signature annotation on attestations: the signature is inside the envelope.
    attach(ref, top.digest, ATTESTATION_KIND,
           Attachment(DSSE_MEDIA_TYPE, envelope, {**annotations, SIGNATURE_ANNOTATION: ""}), client=client)
    attach_artifact(ref, top, DSSE_MEDIA_TYPE, [ArtifactFile("provenance.intoto.json", DSSE_MEDIA_TYPE, envelope)],
                    annotations=annotations, client=client)


def verify_attestations(ref: Reference, key: ec.EllipticCurvePublicKey, *, insecure: bool = False) -> list[str]:
    """Check every attestation attached to `ref`: signed by `key` and naming its digest.

    Returns their predicate types (none attached is an empty list); raises on the first that does not hold.
    """
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    _, top = get_manifest(client, ref)
    found = []
    for item in read_attachments(ref, top.digest, ATTESTATION_KIND, client=client):
        if item.media_type != DSSE_MEDIA_TYPE:
            continue
        statement = open_envelope(item.data, key)
        if statement is None:
            raise SigningError(f"the attestation attached to {ref} is not signed by the given key, or was altered")
        subjects = {str(s["digest"].get("sha256")) for s in statement.get("subject") or []
                    if isinstance(s, dict) and isinstance(s.get("digest"), dict)}
        if top.digest.removeprefix("sha256:") not in subjects:
            raise SigningError(f"the attestation attached to {ref} is about other images, not {top.digest}")
        found.append(str(statement.get("predicateType", "")))
    return found
