"""Interrupted pushes: the registry killed mid-upload, restarted, and the push run again."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from cogbuild.registry.errors import OCIError
from cogbuild.registry import http_policy, transfer
from cogbuild.registry.layout import Layout
from cogbuild.registry.remote import pull_image, push_image
from cogbuild.registry.transfer import TransferStats
from oci_registry_server import CuttingProxy
from synthetic_images import random_layer_files, write_image

pytestmark = pytest.mark.e2e
MB = 1 << 20


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(transfer, "MONOLITHIC_MAX", MB)
    monkeypatch.setattr(transfer, "CHUNK_SIZE", MB)


def _blob(host: str, repo: str, digest: str) -> bytes:
    with urllib.request.urlopen(f"http://{host}/v2/{repo}/blobs/{digest}", timeout=10) as r:
        return r.read()


def _kill_once_at(fraction: float, action, ready=lambda: True):
    fired = threading.Event()

    def progress(digest: str, done: int, total: int) -> None:
        if total > 2 * MB and done >= total * fraction and ready() and not fired.is_set():
            fired.set()
            action()

    return progress, fired


def test_push_resumes_after_registry_restart_mid_upload(registry, layout, small_chunks):
    desc = write_image(layout, [random_layer_files(6 * MB)])
    layer = json.loads(layout.read_blob(desc.digest))["layers"][0]

    def restart() -> None:
        registry.stop(kill=True)
        threading.Thread(target=registry.start).start()

    progress, fired = _kill_once_at(0.4, restart)
    stats = TransferStats()
    push_image(layout, desc, f"{registry.host}/ns/resume:v1", progress=progress, stats=stats)
    assert fired.is_set()
    assert _blob(registry.host, "ns/resume", layer["digest"]) == layout.read_blob(layer["digest"])
    # Resumed, not restarted: at most the chunk in flight is sent twice.
    assert stats.bytes_sent < layer["size"] + 2 * MB


def test_connection_reset_mid_chunk_still_completes(registry, layout, small_chunks, monkeypatch):
    monkeypatch.setattr(http_policy, "BACKOFF", 0.05)
    desc = write_image(layout, [random_layer_files(5 * MB)])
    layer = json.loads(layout.read_blob(desc.digest))["layers"][0]
    proxy = CuttingProxy(registry.port, cut_after=int(2.5 * MB))
    try:
        stats = TransferStats()
        push_image(layout, desc, f"{proxy.host}/ns/reset:v1", stats=stats)
    finally:
        proxy.close()
    assert proxy.cut.is_set()
    assert _blob(registry.host, "ns/reset", layer["digest"]) == layout.read_blob(layer["digest"])
    assert stats.blobs_uploaded == 2


def test_pull_resumes_a_dropped_download_with_range(registry, layout, tmp_path, monkeypatch):
    monkeypatch.setattr(http_policy, "BACKOFF", 0.05)
    desc = write_image(layout, [random_layer_files(4 * MB)])
    layer = json.loads(layout.read_blob(desc.digest))["layers"][0]
    push_image(layout, desc, f"{registry.host}/ns/pull:v1")
    proxy = CuttingProxy(registry.port, cut_after=2 * MB, downstream=True)
    store = Layout(tmp_path / "pulled")
    stats = TransferStats()
    try:
        pull_image(f"{proxy.host}/ns/pull:v1", store, stats=stats)
    finally:
        proxy.close()
    assert proxy.cut.is_set()
    assert store.read_blob(layer["digest"]) == layout.read_blob(layer["digest"])
    assert stats.bytes_received < layer["size"] + MB  # continued, not fetched twice
    assert not any((store.root / "tmp").iterdir())


def test_failed_push_leaves_no_tag_and_rerun_sends_only_what_is_missing(registry, layout, small_chunks,
                                                                        monkeypatch):
    monkeypatch.setattr(http_policy, "ATTEMPTS", 2)
    monkeypatch.setattr(http_policy, "BACKOFF", 0.05)
    monkeypatch.setattr(transfer, "BLOB_ATTEMPTS", 2)
    desc = write_image(layout, [{"small.txt": b"small layer"}, random_layer_files(8 * MB)])
    manifest = json.loads(layout.read_blob(desc.digest))
    big = max(manifest["layers"], key=lambda layer: layer["size"])
    ref = f"{registry.host}/ns/broken:v1"

    # Killed once the small layer and the config are in and the big layer is past half way.
    first = TransferStats()
    progress, fired = _kill_once_at(0.5, lambda: registry.stop(kill=True), lambda: first.blobs_uploaded == 2)
    with pytest.raises(OCIError) as err:
        push_image(layout, desc, ref, progress=progress, stats=first)
    assert fired.is_set()
    assert registry.host in str(err.value) and "\n" not in str(err.value)

    registry.start()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"http://{registry.host}/v2/ns/broken/manifests/v1", timeout=10)
    assert missing.value.code == 404  # the tag never pointed at a partial image

    stats = TransferStats()
    push_image(layout, desc, ref, stats=stats)
    assert stats.blobs_uploaded == 1 and stats.blobs_skipped == 2
    assert stats.bytes_sent == big["size"]
    assert _blob(registry.host, "ns/broken", big["digest"]) == layout.read_blob(big["digest"])


def test_corrupt_local_blob_is_refused_by_the_registry(registry, layout):
    desc = write_image(layout, [{"a.txt": b"original content"}])
    layer = json.loads(layout.read_blob(desc.digest))["layers"][0]
    path = layout.blob_path(layer["digest"])
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(OCIError) as err:
        push_image(layout, desc, f"{registry.host}/ns/corrupt:v1")
    assert "DIGEST_INVALID" in str(err.value) or "digest" in str(err.value).lower()
    with pytest.raises(urllib.error.HTTPError):
        _blob(registry.host, "ns/corrupt", layer["digest"])


def test_first_failure_stops_the_other_uploads(registry, layout):
    desc = write_image(layout, [random_layer_files(48 * MB), {"small": b"will go missing"}])
    manifest = json.loads(layout.read_blob(desc.digest))
    big, small = sorted(manifest["layers"], key=lambda layer: -layer["size"])
    layout.blob_path(small["digest"]).unlink()
    stats = TransferStats()
    with pytest.raises(OCIError, match="missing from the local store"):
        push_image(layout, desc, f"{registry.host}/ns/failfast:v1", stats=stats)
    assert stats.bytes_sent < big["size"]  # the big upload was abandoned, not finished
    with pytest.raises(urllib.error.HTTPError):
        _blob(registry.host, "ns/failfast", big["digest"])
