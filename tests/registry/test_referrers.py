"""cog.lock and an SBOM attached as referrers, found again after push (fallback tag on distribution 2.8)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from cogbuild.artifacts import Artifact
from cogbuild.lock_artifacts import LOCK_ARTIFACT_TYPE, SPDX_ARTIFACT_TYPE, attach_lock_and_sbom
from cogbuild.registry.referrers import fallback_tag, find_referrers
from cogbuild.registry.remote import push_image
from synthetic_images import write_image

pytestmark = pytest.mark.e2e

LOCK = b'version = 1\n[[package]]\nname = "numpy"\n'
ARTIFACTS = [
    Artifact("wheel", "numpy", "2.1.0", "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
             "https://files.pythonhosted.org/numpy.whl", "ab" * 32, 100),
    Artifact("deb", "libc6", "2.36-9", "libc6_2.36-9_amd64.deb", "http://deb.debian.org/libc6.deb", "cd" * 32, 200),
]


def _get(url: str, accept: str) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": accept}), timeout=10) as r:
        return r.read()


def test_lock_and_sbom_are_discoverable_after_push(registry, layout):
    desc = write_image(layout, [{"predict.py": b"pass\n"}])
    ref = f"{registry.host}/ns/withlock:v1"
    push_image(layout, desc, ref)
    attached = attach_lock_and_sbom(ref, desc, LOCK, ARTIFACTS)
    attach_lock_and_sbom(ref, desc, LOCK, ARTIFACTS)  # again: idempotent, no duplicates

    found = find_referrers(ref, desc.digest)
    assert sorted(d.digest for d in found) == sorted(d.digest for d in attached)
    (lock_desc,) = find_referrers(ref, desc.digest, artifact_type=LOCK_ARTIFACT_TYPE)
    lock_manifest = json.loads(_get(f"http://{registry.host}/v2/ns/withlock/manifests/{lock_desc.digest}",
                                    lock_desc.media_type))
    assert lock_manifest["subject"]["digest"] == desc.digest
    assert lock_manifest["artifactType"] == LOCK_ARTIFACT_TYPE
    blob = _get(f"http://{registry.host}/v2/ns/withlock/blobs/{lock_manifest['layers'][0]['digest']}", "*/*")
    assert blob == LOCK

    (sbom_desc,) = find_referrers(ref, desc.digest, artifact_type=SPDX_ARTIFACT_TYPE)
    sbom_manifest = json.loads(_get(f"http://{registry.host}/v2/ns/withlock/manifests/{sbom_desc.digest}",
                                    sbom_desc.media_type))
    sbom = json.loads(_get(f"http://{registry.host}/v2/ns/withlock/blobs/{sbom_manifest['layers'][0]['digest']}",
                           "*/*"))
    assert sbom["spdxVersion"] == "SPDX-2.3"
    names = {p["name"] for p in sbom["packages"]}
    assert {"numpy", "libc6"} <= names

    # distribution 2.8 has no referrers API: the fallback tag carries the list.
    index = json.loads(_get(f"http://{registry.host}/v2/ns/withlock/manifests/{fallback_tag(desc.digest)}",
                            "application/vnd.oci.image.index.v1+json"))
    assert len(index["manifests"]) == 2


def test_attaching_again_reads_the_referrers_tag_and_sends_nothing(registry, layout, registry_requests):
    desc = write_image(layout, [{"predict.py": b"pass\n"}])
    ref = f"{registry.host}/ns/again:v1"
    push_image(layout, desc, ref)
    first = attach_lock_and_sbom(ref, desc, LOCK, ARTIFACTS)
    registry_requests.clear()
    assert attach_lock_and_sbom(ref, desc, LOCK, ARTIFACTS) == first
    assert registry_requests == [("GET", f"/v2/ns/again/manifests/{fallback_tag(desc.digest)}")] * 2


def test_a_changed_lock_is_attached_beside_the_first(registry, layout):
    desc = write_image(layout, [{"predict.py": b"pass\n"}])
    ref = f"{registry.host}/ns/relock:v1"
    push_image(layout, desc, ref)
    attach_lock_and_sbom(ref, desc, LOCK, ARTIFACTS)
    attach_lock_and_sbom(ref, desc, LOCK + b"# changed\n", ARTIFACTS)
    assert len(find_referrers(ref, desc.digest, artifact_type=LOCK_ARTIFACT_TYPE)) == 2


def test_no_referrers_is_an_empty_list(registry, layout):
    desc = write_image(layout, [{"a": b"a"}])
    push_image(layout, desc, f"{registry.host}/ns/plain:v1")
    assert find_referrers(f"{registry.host}/ns/plain:v1", desc.digest) == []
