"""Registry credentials go to the registry only: an upload Location or a blob redirect that points at
another host (S3, a CDN with signed URLs) gets no Authorization header, as with docker and containerd."""

from __future__ import annotations

import base64
import hashlib

import pytest

from cogbuild.layers.descriptor import Descriptor
from cogbuild.registry.auth import store_credentials
from cogbuild.registry.client import RegistryClient
from cogbuild.registry.http_policy import same_origin
from cogbuild.registry.layout import Layout
from cogbuild.registry.light import LightClient
from cogbuild.registry.transfer import BlobPusher, TransferStats, download_blob
from http_server import LoopbackHTTPServer, Reply, Request
from oci_registry_server import PASSWORD, USER

BLOB = b"layer bytes kept in storage elsewhere\n" * 100
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def seen(server: LoopbackHTTPServer) -> list[tuple[str, str, str | None]]:
    """Each request's method, path and Authorization header, in order."""
    return [(request.method, request.path, request.headers.get("Authorization")) for request in server.requests]


@pytest.fixture
def storage():
    """Object storage on another port: takes the upload and serves the blob, asking for no credentials."""
    stored: dict[str, bytes] = {}

    def answer(request: Request) -> Reply:
        if request.method == "PUT":
            stored["blob"] = request.body
            return Reply(201)
        return Reply(200, body=BLOB)

    server = LoopbackHTTPServer(answer)
    server.stored = stored
    yield server
    server.close()


@pytest.fixture
def registry_sending_elsewhere(storage):
    """A registry behind Basic auth that hands uploads and blob downloads to `storage`."""

    def answer(request: Request) -> Reply:
        method, path = request.method, request.path
        if request.headers.get("Authorization") != BASIC:
            return Reply(401, {"WWW-Authenticate": 'Basic realm="test"'})
        if path == f"/v2/ns/redirected/blobs/{DIGEST}":  # for the light client's HEAD
            return Reply(307, {"Location": f"http://{storage.host}/bucket/blob?signature=abc"})
        if method == "HEAD":
            return Reply(404)
        if method == "POST" and path.endswith("/blobs/uploads/"):
            return Reply(202, {"Location": f"http://{storage.host}/upload/session-1?signature=abc"})
        if method == "GET" and path.endswith(f"/blobs/{DIGEST}"):
            return Reply(307, {"Location": f"http://{storage.host}/bucket/blob?signature=abc"})
        return Reply(404)

    server = LoopbackHTTPServer(answer)
    store_credentials(server.host, USER, PASSWORD)
    yield server
    server.close()


def test_upload_location_on_another_host_gets_no_authorization(registry_sending_elsewhere, storage, tmp_path):
    registry = registry_sending_elsewhere
    layout = Layout(tmp_path / "layout").init()
    layout.write_blob(BLOB)
    desc = Descriptor("application/octet-stream", DIGEST, len(BLOB))
    BlobPusher(RegistryClient(registry.host), "ns/app", layout, stats=TransferStats()).push(desc)

    assert storage.stored["blob"] == BLOB
    assert [(method, auth) for method, _, auth in seen(storage)] == [("PUT", None)]
    assert ("POST", "/v2/ns/app/blobs/uploads/", BASIC) in seen(registry)  # the registry itself got them


def test_blob_redirect_to_another_host_gets_no_authorization(registry_sending_elsewhere, storage, tmp_path):
    registry = registry_sending_elsewhere
    layout = Layout(tmp_path / "layout").init()
    desc = Descriptor("application/octet-stream", DIGEST, len(BLOB))
    download_blob(RegistryClient(registry.host), "ns/app", desc, layout, stats=TransferStats())

    assert layout.read_blob(DIGEST) == BLOB
    assert [(method, auth) for method, _, auth in seen(storage)] == [("GET", None)]
    assert ("GET", f"/v2/ns/app/blobs/{DIGEST}", BASIC) in seen(registry)


def test_light_client_sends_no_authorization_where_the_registry_redirects(registry_sending_elsewhere, storage):
    registry = registry_sending_elsewhere
    assert LightClient(registry.host).has_blob("ns/redirected", DIGEST)

    assert [(method, auth) for method, _, auth in seen(storage)] == [("HEAD", None)]
    assert ("HEAD", f"/v2/ns/redirected/blobs/{DIGEST}", BASIC) in seen(registry)


@pytest.mark.parametrize("url, other, same", [
    ("http://127.0.0.1:5000/v2/x", "http://127.0.0.1:5000/v2/", True),
    ("https://ghcr.io/v2/x", "https://ghcr.io:443/v2/", True),
    ("http://127.0.0.1:5001/upload", "http://127.0.0.1:5000/v2/", False),
    ("http://127.0.0.2:5000/upload", "http://127.0.0.1:5000/v2/", False),
    ("https://bucket.s3.amazonaws.com/blob", "https://registry.example/v2/", False),
    ("http://registry.example/v2/x", "https://registry.example/v2/", False),
])
def test_same_origin(url, other, same):
    assert same_origin(url, other) is same
