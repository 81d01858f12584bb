"""Push and pull against a real docker-registry on loopback (anonymous)."""

from __future__ import annotations

import json
import urllib.request

import pytest

from cogbuild.registry.errors import OCIError
from cogbuild.registry import transfer
from cogbuild.registry.layout import Layout
from cogbuild.registry.remote import pull_image, push_image
from cogbuild.registry.transfer import TransferStats
from synthetic_images import random_layer_files, write_image, write_index

pytestmark = pytest.mark.e2e


def _get(url: str, accept: str = "") -> tuple[bytes, dict]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read(), dict(response.headers)


def test_push_single_manifest_is_served_byte_for_byte(registry, layout):
    desc = write_image(layout, [{"app/predict.py": b"print('hi')\n"}, {"w/weights.bin": b"\x00" * 4096}])
    digest = push_image(layout, desc, f"{registry.host}/ns/model:v1")
    assert digest == desc.digest
    body, headers = _get(f"http://{registry.host}/v2/ns/model/manifests/v1", desc.media_type)
    assert body == layout.read_blob(desc.digest)
    assert headers["Docker-Content-Digest"] == desc.digest
    for layer in json.loads(body)["layers"]:
        blob, _ = _get(f"http://{registry.host}/v2/ns/model/blobs/{layer['digest']}")
        assert blob == layout.read_blob(layer["digest"])


def test_push_index_pushes_every_child_and_tags(registry, layout):
    amd = write_image(layout, [{"a": b"amd64 code"}], arch="amd64")
    arm = write_image(layout, [{"a": b"arm64 code"}], arch="arm64")
    index = write_index(layout, [amd, arm])
    cpu_only = write_index(layout, [amd])
    stats = TransferStats()
    push_image(layout, index, f"{registry.host}/ns/idx:v2", extra_tags=["latest"], variants={"cpu": cpu_only},
               stats=stats)
    for tag, expected in [("v2", index), ("latest", index), ("v2-cpu", cpu_only)]:
        body, headers = _get(f"http://{registry.host}/v2/ns/idx/manifests/{tag}", expected.media_type)
        assert headers["Docker-Content-Digest"] == expected.digest
    for child in (amd, arm):
        body, _ = _get(f"http://{registry.host}/v2/ns/idx/manifests/{child.digest}", child.media_type)
        assert body == layout.read_blob(child.digest)
    assert stats.blobs_uploaded == 4  # two configs, two layers


def test_repush_of_an_unchanged_image_is_one_head_per_tag(registry, layout, registry_requests):
    desc = write_image(layout, [{"x": b"1" * 10000}, {"y": b"2" * 10000}])
    cpu = write_image(layout, [{"x": b"1" * 10000}])
    push_image(layout, desc, f"{registry.host}/ns/again:v1", variants={"cpu": cpu})
    registry_requests.clear()
    stats = TransferStats()
    assert push_image(layout, desc, f"{registry.host}/ns/again:v1", variants={"cpu": cpu}, stats=stats) == desc.digest
    assert stats.bytes_sent == 0
    assert registry_requests == [("HEAD", "/v2/ns/again/manifests/v1"),
                                 ("HEAD", "/v2/ns/again/manifests/v1-cpu")]


def test_repush_tags_what_is_not_tagged_yet_uploading_only_what_is_new(registry, layout):
    desc = write_image(layout, [{"x": b"1" * 10000}, {"y": b"2" * 10000}])
    cpu = write_image(layout, [{"x": b"1" * 10000}])
    push_image(layout, desc, f"{registry.host}/ns/again:v1")
    stats = TransferStats()
    push_image(layout, desc, f"{registry.host}/ns/again:v1", variants={"cpu": cpu}, stats=stats)
    _, headers = _get(f"http://{registry.host}/v2/ns/again/manifests/v1-cpu", cpu.media_type)
    assert headers["Docker-Content-Digest"] == cpu.digest
    # The first image's layers and config were there; the variant's config (one layer fewer) is new.
    assert (stats.blobs_skipped, stats.blobs_uploaded) == (3, 1)


def test_repush_moves_a_tag_that_names_another_image(registry, layout):
    first = write_image(layout, [{"a": b"first"}])
    second = write_image(layout, [{"a": b"second"}])
    push_image(layout, first, f"{registry.host}/ns/moved:v1")
    push_image(layout, second, f"{registry.host}/ns/moved:v1")
    _, headers = _get(f"http://{registry.host}/v2/ns/moved/manifests/v1", second.media_type)
    assert headers["Docker-Content-Digest"] == second.digest


def test_push_by_digest_alone_checks_that_digest(registry, layout):
    desc = write_image(layout, [{"a": b"by digest"}])
    push_image(layout, desc, f"{registry.host}/ns/bydigest@{desc.digest}")
    body, _ = _get(f"http://{registry.host}/v2/ns/bydigest/manifests/{desc.digest}", desc.media_type)
    assert body == layout.read_blob(desc.digest)


def test_push_to_other_repository_mounts_known_blobs(registry, layout, tmp_path):
    desc = write_image(layout, [random_layer_files(200_000)])
    push_image(layout, desc, f"{registry.host}/team/one:v1", hints=tmp_path / "hints")
    stats = TransferStats()
    push_image(layout, desc, f"{registry.host}/team/two:v1", stats=stats, hints=tmp_path / "hints")
    assert stats.blobs_mounted == 2
    assert stats.bytes_sent == 0
    body, _ = _get(f"http://{registry.host}/v2/team/two/manifests/v1", desc.media_type)
    assert body == layout.read_blob(desc.digest)


def test_large_blob_goes_in_resumable_chunks(registry, layout, monkeypatch):
    monkeypatch.setattr(transfer, "MONOLITHIC_MAX", 100_000)
    monkeypatch.setattr(transfer, "CHUNK_SIZE", 128_000)
    desc = write_image(layout, [random_layer_files(500_000)])
    seen: list[tuple[int, int]] = []
    push_image(layout, desc, f"{registry.host}/ns/big:v1", progress=lambda d, done, total: seen.append((done, total)))
    layer = json.loads(layout.read_blob(desc.digest))["layers"][0]
    blob, _ = _get(f"http://{registry.host}/v2/ns/big/blobs/{layer['digest']}")
    assert blob == layout.read_blob(layer["digest"])
    assert (layer["size"], layer["size"]) in seen


def test_pull_round_trip_keeps_digests(registry, layout, tmp_path):
    amd = write_image(layout, [{"a": b"amd"}, random_layer_files(300_000, seed=1)], arch="amd64")
    arm = write_image(layout, [{"a": b"arm"}], arch="arm64")
    index = write_index(layout, [amd, arm])
    push_image(layout, index, f"{registry.host}/ns/round:v1")
    store = Layout(tmp_path / "pulled")
    pulled = pull_image(f"{registry.host}/ns/round:v1", store)
    assert pulled.digest == index.digest
    assert store.resolve(f"{registry.host}/ns/round:v1").digest == index.digest
    for blob in (layout.root / "blobs" / "sha256").iterdir():
        assert store.read_blob("sha256:" + blob.name) == blob.read_bytes()


def test_pull_of_missing_tag_is_one_sentence(registry, tmp_path):
    with pytest.raises(OCIError) as err:
        pull_image(f"{registry.host}/ns/nothing:v9", Layout(tmp_path / "p"))
    message = str(err.value)
    assert registry.host in message and "ns/nothing" in message and "not found" in message
    assert "\n" not in message
