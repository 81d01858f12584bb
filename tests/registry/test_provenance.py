"""SLSA provenance as a signed in-toto statement: what it records, DSSE, and verify against a real registry."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess

import pytest
from click.testing import CliRunner

from cogbuild.artifacts import Artifact
from cogbuild.cli import cli
from cogbuild.lock import Lock, LockedArtifact
from cogbuild.provenance import (DSSE_MEDIA_TYPE, SLSA_PROVENANCE, attest_image, dsse_envelope, open_envelope, pae,
                                 provenance_statement, verify_attestations)
from cogbuild.registry.attachments import ATTESTATION_KIND, Attachment, attach, attachment_tag
from cogbuild.registry.client import RegistryClient
from cogbuild.registry.reference import parse_reference
from cogbuild.registry.referrers import find_referrers
from cogbuild.registry.remote import get_manifest, push_image, put_manifest
from cogbuild.signing import SigningError, public_pem, sign_manifests
from cryptography.hazmat.primitives.asymmetric import ec
from synthetic_images import write_image

DEB = Artifact("deb", "libc6", "2.36-9", "libc6_2.36-9_amd64.deb", "http://deb.example/libc6.deb", "1" * 64, 10)
WHEEL = Artifact("wheel", "numpy", "2.1.0", "numpy-2.1.0.whl", "http://wheels.example/numpy.whl", "2" * 64, 20)


def _lock() -> Lock:
    return Lock("sha256:" + "9" * 64, "3.11", "bookworm", ["linux/amd64"], ["cpu"],
                [LockedArtifact("linux/amd64", "os", DEB), LockedArtifact("linux/amd64", "python", WHEEL)])


def _model(tmp_path, *, git: bool):
    model = tmp_path / "model"
    model.mkdir()
    (model / "cog.yaml").write_text('build:\n  python_version: "3.11"\n')
    if git:
        for args in (["init", "-q"], ["add", "cog.yaml"],
                     ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "model"]):
            subprocess.run(["git", "-C", str(model), *args], check=True, capture_output=True)
    return model / "cog.yaml"


def test_statement_records_the_source_every_locked_input_and_the_builder(tmp_path):
    cog_yaml = _model(tmp_path, git=True)
    statement = provenance_statement("127.0.0.1:5000/ns/m", ["sha256:" + "a" * 64, "sha256:" + "b" * 64],
                                     cog_yaml, ["sha256:" + "c" * 64], _lock())
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == SLSA_PROVENANCE
    assert [s["digest"]["sha256"] for s in statement["subject"]] == ["a" * 64, "b" * 64]
    definition = statement["predicate"]["buildDefinition"]
    deps = {d["name"]: d for d in definition["resolvedDependencies"]}
    assert deps["cog.yaml"]["digest"] == {"sha256": hashlib.sha256(cog_yaml.read_bytes()).hexdigest()}
    assert deps["code layer"]["digest"] == {"sha256": "c" * 64}
    head = subprocess.run(["git", "-C", str(cog_yaml.parent), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert deps["git"]["digest"] == {"gitCommit": head} and "annotations" not in deps["git"]
    assert deps["deb:libc6==2.36-9"] == {"name": "deb:libc6==2.36-9", "uri": DEB.url, "digest": {"sha256": "1" * 64}}
    assert deps["wheel:numpy==2.1.0"]["digest"] == {"sha256": "2" * 64}
    assert statement["predicate"]["runDetails"]["builder"]["version"]["cogbuild"]
    cog_yaml.write_text(cog_yaml.read_text() + "# edited\n")
    edited = provenance_statement("r/m", ["sha256:" + "a" * 64], cog_yaml, [], _lock())
    git = [d for d in edited["predicate"]["buildDefinition"]["resolvedDependencies"] if d["name"] == "git"]
    assert git[0]["annotations"] == {"uncommittedChanges": True}


def test_outside_git_there_is_no_commit(tmp_path):
    statement = provenance_statement("r/m", ["sha256:" + "a" * 64], _model(tmp_path, git=False), [], _lock())
    assert "git" not in {d["name"] for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}


def test_dsse_signs_the_pre_authentication_encoding():
    assert pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"  # the DSSE specification's example
    key = ec.generate_private_key(ec.SECP256R1())
    statement = {"_type": "https://in-toto.io/Statement/v1", "subject": []}
    envelope = dsse_envelope(key, statement)
    assert open_envelope(envelope, key.public_key()) == statement
    assert open_envelope(envelope, ec.generate_private_key(ec.SECP256R1()).public_key()) is None
    doc = json.loads(envelope)
    doc["payload"] = base64.b64encode(b'{"_type":"forged"}').decode()
    assert open_envelope(json.dumps(doc).encode(), key.public_key()) is None
    assert open_envelope(b"not json", key.public_key()) is None


@pytest.mark.e2e
def test_attestation_is_verified_listed_by_show_and_tampering_fails_verify(registry, layout, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pub").write_bytes(public_pem(key.public_key()))
    desc = write_image(layout, [{"src/predict.py": b"x"}])
    ref = parse_reference(f"{registry.host}/ns/att:v1")
    push_image(layout, desc, ref)
    sign_manifests(ref, [desc], key)
    cog_yaml = _model(tmp_path, git=False)
    statement = provenance_statement(ref.name, [desc.digest], cog_yaml, [], _lock())
    attest_image(ref, desc, statement, key)

    assert verify_attestations(ref, key.public_key()) == [SLSA_PROVENANCE]
    assert [r.digest for r in find_referrers(ref, desc.digest, artifact_type=DSSE_MEDIA_TYPE)]  # also a referrer
    ok = CliRunner().invoke(cli, ["verify", str(ref), "--key", str(tmp_path / "k.pub")])
    assert ok.exit_code == 0 and ok.output.strip().endswith(f"attestations: {SLSA_PROVENANCE}"), ok.output
    shown = CliRunner().invoke(cli, ["show", str(ref)])
    assert "signatures: 1" in shown.output and f"attestations: {SLSA_PROVENANCE}" in shown.output, shown.output

    # Tampered: the payload swapped for a statement about the same image claiming other inputs.
    doc = json.loads(dsse_envelope(key, statement))
    forged = {**statement, "predicate": {"buildDefinition": {"resolvedDependencies": []}}}
    doc["payload"] = base64.b64encode(json.dumps(forged).encode()).decode()
    _replace_attestations(registry, ref, desc.digest, json.dumps(doc).encode())
    refused = CliRunner().invoke(cli, ["verify", str(ref), "--key", str(tmp_path / "k.pub")])
    assert refused.exit_code == 1
    assert refused.output.strip().splitlines()[-1] == (
        f"error: the attestation attached to {ref.with_digest(desc.digest)} is not signed by the given key, or was "
        "altered")  # checked by the digest whose signature verify just accepted
    # Validly signed, but about another image: moved over from elsewhere.
    other = provenance_statement(ref.name, ["sha256:" + "e" * 64], cog_yaml, [], _lock())
    _replace_attestations(registry, ref, desc.digest, dsse_envelope(key, other))
    with pytest.raises(SigningError, match=f"is about other images, not {desc.digest}$"):
        verify_attestations(ref, key.public_key())


def _replace_attestations(registry, ref, digest: str, envelope: bytes) -> None:
    """Point the `.att` tag at a manifest holding only `envelope` (what an attacker with push access does)."""
    scratch = "sha256:" + hashlib.sha256(envelope).hexdigest()  # a subject of its own: a manifest of one layer
    attach(ref, scratch, ATTESTATION_KIND, Attachment(DSSE_MEDIA_TYPE, envelope, {"predicateType": SLSA_PROVENANCE}))
    client = RegistryClient(registry.host)
    data, desc = get_manifest(client, ref, attachment_tag(scratch, ATTESTATION_KIND))
    put_manifest(client, ref.repository, data, desc, attachment_tag(digest, ATTESTATION_KIND))
