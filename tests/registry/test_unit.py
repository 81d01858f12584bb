"""Fast, offline: reference parsing, error sentences and retries (a scripted HTTP server on loopback),
the SBOM, and the mount-hint file surviving damage."""

from __future__ import annotations

import json

import pytest

from cogbuild.artifacts import Artifact
from cogbuild.registry.errors import InvalidReference, OCIError
from cogbuild.registry import http_policy
from cogbuild.registry.blob_locations import BlobLocations
from cogbuild.registry.client import RegistryClient, RegistryError
from cogbuild.registry.reference import Reference, is_loopback_host, parse_reference
from cogbuild.registry.remote import get_manifest
from cogbuild.sbom import spdx_sbom
from http_server import LoopbackHTTPServer, Reply
from oci_registry_server import FakeReferrersRegistry


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:5000/ns/repo:tag", Reference("127.0.0.1:5000", "ns/repo", "tag")),
    ("localhost/repo", Reference("localhost", "repo")),
    ("ubuntu", Reference("docker.io", "library/ubuntu")),
    ("me/model:v1", Reference("docker.io", "me/model", "v1")),
    ("ghcr.io/a/b/c@sha256:" + "a" * 64, Reference("ghcr.io", "a/b/c", None, "sha256:" + "a" * 64)),
    ("[::1]:5000/x:y", Reference("[::1]:5000", "x", "y")),
    ("index.docker.io/me/m", Reference("docker.io", "me/m")),
])
def test_parse_reference(text, expected):
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", ["", "Upper/Case", "host:5000/repo:bad tag", "r@sha256:123", "a//b"])
def test_bad_reference_is_a_usage_error(text):
    with pytest.raises(InvalidReference):
        parse_reference(text)


def test_reference_helpers():
    ref = parse_reference("me/model:v1")
    assert ref.api_host == "registry-1.docker.io"
    assert str(ref.with_digest("sha256:" + "b" * 64)) == "docker.io/me/model:v1@sha256:" + "b" * 64
    assert [is_loopback_host(h) for h in ("127.0.0.5:80", "localhost:5000", "[::1]:5000", "ghcr.io", "10.0.0.1")] \
        == [True, True, True, False, False]


@pytest.fixture
def fast_retries(monkeypatch):
    monkeypatch.setattr(http_policy, "BACKOFF", 0.01)


MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {}, "layers": []}).encode()


def _fetch(host):
    ref = parse_reference(f"{host}/ns/app:v1")
    return get_manifest(RegistryClient(ref.registry), ref)


def test_429_and_503_are_retried_then_succeed(fast_retries):
    server = LoopbackHTTPServer(script=[Reply(429, {"Retry-After": "0"}), Reply(503), Reply(200, body=MANIFEST)])
    try:
        data, desc = _fetch(server.host)
    finally:
        server.close()
    assert data == MANIFEST and len(server.requests) == 3


@pytest.mark.parametrize("status, headers, words", [
    (401, {}, ["needs credentials", "cogbuild login"]),
    (403, {}, ["denied permission", "ns/app"]),
    (404, {}, ["not found", "ns/app"]),
    (429, {}, ["rate-limiting", "after 5 tries"]),
    (502, {}, ["failed with 502", "after 5 tries", "try again later"]),
    (400, {"Content-Type": "application/json"}, ["MANIFEST_INVALID: bad"]),
])
def test_failures_become_one_sentence(fast_retries, status, headers, words):
    body = json.dumps({"errors": [{"code": "MANIFEST_INVALID", "message": "bad"}]}).encode() if status == 400 else b""
    server = LoopbackHTTPServer(script=[Reply(status, headers, body)])
    try:
        with pytest.raises(RegistryError) as err:
            _fetch(server.host)
    finally:
        server.close()
    message = str(err.value)
    assert server.host in message and "\n" not in message
    for word in words:
        assert word in message
    assert isinstance(err.value, OCIError)


def test_unreachable_registry_is_one_sentence(fast_retries):
    server = LoopbackHTTPServer(script=[Reply(200)])
    host = server.host
    server.close()
    with pytest.raises(RegistryError, match="unreachable"):
        _fetch(host)


def test_manifest_with_wrong_digest_is_refused(fast_retries):
    server = LoopbackHTTPServer(script=[Reply(200, {"Docker-Content-Digest": "sha256:" + "0" * 64}, MANIFEST)])
    try:
        with pytest.raises(RegistryError, match="nothing was stored"):
            _fetch(server.host)
    finally:
        server.close()


def test_non_loopback_registry_needs_insecure_for_plain_http():
    assert RegistryClient("registry.example.com").base.startswith("https://")
    assert RegistryClient("registry.example.com", insecure=True).base.startswith("http://")
    assert RegistryClient("localhost:5000").base.startswith("http://")


def test_sbom_is_deterministic_spdx():
    artifacts = [Artifact("wheel", "Pillow", "10.0", "f.whl", "https://x/f.whl", "aa" * 32, 1),
                 Artifact("deb", "zlib1g", "1:1.2", "z.deb", "http://y/z.deb", "bb" * 32, 2)]
    one = spdx_sbom("r/m", "sha256:" + "c" * 64, artifacts)
    two = spdx_sbom("r/m", "sha256:" + "c" * 64, list(reversed(artifacts)))
    assert one == two
    doc = json.loads(one)
    assert doc["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
    dated = json.loads(spdx_sbom("r/m", "sha256:" + "c" * 64, artifacts, created=1700000000))
    assert dated["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    purls = {ref["referenceLocator"] for p in doc["packages"] for ref in p.get("externalRefs", [])}
    assert purls == {"pkg:pypi/pillow@10.0", "pkg:deb/debian/zlib1g@1:1.2"}


def test_blob_locations_survive_a_damaged_file(tmp_path):
    hints = BlobLocations("127.0.0.1:5000", tmp_path)
    hints.path.parent.mkdir(parents=True, exist_ok=True)
    hints.path.write_text("{not json")
    hints = BlobLocations("127.0.0.1:5000", tmp_path)
    assert hints.sources("sha256:x") == []
    hints.remember("a/b", ["sha256:x"])
    hints.remember("c/d", ["sha256:x"])
    hints.save()
    assert BlobLocations("127.0.0.1:5000", tmp_path).sources("sha256:x") == ["c/d", "a/b"]


def test_blob_locations_without_a_directory_are_this_process_only(tmp_path, monkeypatch):
    """registry/ reads no cogbuild variable: where hints persist is its caller's choice (cogbuild's cache)."""
    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    hints = BlobLocations("127.0.0.1:5000")
    hints.remember("a/b", ["sha256:x"])
    hints.save()
    assert hints.sources("sha256:x") == ["a/b"]
    assert BlobLocations("127.0.0.1:5000").sources("sha256:x") == []
    assert list(tmp_path.iterdir()) == []


def test_registry_with_referrers_api_needs_no_fallback_tag():
    from cogbuild.layers.descriptor import OCI_MANIFEST, Descriptor
    from cogbuild.lock_artifacts import LOCK_ARTIFACT_TYPE, SPDX_ARTIFACT_TYPE, attach_lock_and_sbom
    from cogbuild.registry.referrers import find_referrers

    fake = FakeReferrersRegistry()
    subject = Descriptor(OCI_MANIFEST, "sha256:" + "d" * 64, 123)
    try:
        attached = attach_lock_and_sbom(f"{fake.host}/ns/m:v1", subject, b"version = 1\n", [])
        found = find_referrers(f"{fake.host}/ns/m:v1", subject.digest)
        (lock,) = find_referrers(f"{fake.host}/ns/m:v1", subject.digest, artifact_type=LOCK_ARTIFACT_TYPE)
    finally:
        fake.close()
    assert not any(p.startswith("sha256-") for p in fake.puts)  # no fallback tag written
    assert sorted(d.digest for d in found) == sorted(d.digest for d in attached)
    assert lock.digest == attached[0].digest
    assert json.loads(fake.manifests[attached[1].digest])["artifactType"] == SPDX_ARTIFACT_TYPE


def test_transfer_progress_sums_blobs_and_throttles():
    from cogbuild.transfer_progress import TransferProgress

    said: list[str] = []
    progress = TransferProgress(said.append, "pushed", interval=0.0)
    progress("sha256:a", 500_000, 1_000_000)
    progress("sha256:b", 2_000_000, 2_000_000)
    assert said[-1] == "pushed 2.5 / 3.0 MB (1 / 2 blobs)"
    quiet = TransferProgress(said.append, interval=3600)
    quiet("sha256:a", 1, 2)
    assert len(said) == 2


def test_one_function_makes_every_artifact_manifest_from_its_content_alone():
    from cogbuild.layers.descriptor import EMPTY_JSON, OCI_EMPTY, OCI_MANIFEST, Descriptor
    from cogbuild.registry.binary_cache import LAYER_ARTIFACT
    from cogbuild.registry.referrers import artifact_manifest

    layer = Descriptor.of("application/octet-stream", b"layer", annotations={"run.cog.diffid": "sha256:" + "a" * 64})
    image = Descriptor.of(OCI_MANIFEST, b'{"schemaVersion":2}')
    entry = json.loads(artifact_manifest(LAYER_ARTIFACT, [layer]))  # a cache entry: no subject, no annotations
    assert entry == {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": LAYER_ARTIFACT,
                     "config": Descriptor.of(OCI_EMPTY, EMPTY_JSON).to_json(), "layers": [layer.to_json()]}
    attached = json.loads(artifact_manifest("application/x-lock", [layer], {"b": "2", "a": "1"}, subject=image))
    assert attached["subject"] == image.to_json() and attached["annotations"] == {"a": "1", "b": "2"}
    # Canonical bytes: the same content in another order gives the same manifest, so racing writers agree.
    assert artifact_manifest("t", [layer], {"a": "1", "b": "2"}) == artifact_manifest("t", [layer], {"b": "2", "a": "1"})
    assert artifact_manifest("t", [layer], {}) == artifact_manifest("t", [layer])
