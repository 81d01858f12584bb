"""Registry credentials go to the registry only: an upload Location or a blob redirect that points at
another host (S3, a CDN with signed URLs) gets no Authorization header, as with docker and containerd."""

from __future__ import annotations

import base64
import hashlib
from http.server import BaseHTTPRequestHandler

import pytest

from cogbuild.layers.descriptor import Descriptor
from cogbuild.registry.auth import store_credentials
from cogbuild.registry.client import RegistryClient
from cogbuild.registry.http_policy import same_origin
from cogbuild.registry.layout import Layout
from cogbuild.registry.transfer import BlobPusher, TransferStats, download_blob
from oci_registry_server import PASSWORD, USER, LoopbackHTTPServer

BLOB = b"layer bytes kept in storage elsewhere\n" * 100
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


class _Recorder(LoopbackHTTPServer):
    """A loopback HTTP server that records each request's method, path and Authorization header."""

    def __init__(self, answer) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.command, self.path, self.headers.get("Authorization")))
                status, headers, data = answer(self.command, self.path, self.headers, body)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _any

        self._serve(Handler)


@pytest.fixture
def storage():
    """Object storage on another port: takes the upload and serves the blob, asking for no credentials."""
    stored: dict[str, bytes] = {}

    def answer(method, path, headers, body):
        if method == "PUT":
            stored["blob"] = body
            return 201, {}, b""
        return 200, {}, BLOB

    server = _Recorder(answer)
    server.stored = stored
    yield server
    server.close()


@pytest.fixture
def registry_sending_elsewhere(storage):
    """A registry behind Basic auth that hands uploads and blob downloads to `storage`."""

    def answer(method, path, headers, body):
        if headers.get("Authorization") != BASIC:
            return 401, {"WWW-Authenticate": 'Basic realm="test"'}, b""
        if method == "HEAD":
            return 404, {}, b""
        if method == "POST" and path.endswith("/blobs/uploads/"):
            return 202, {"Location": f"http://{storage.host}/upload/session-1?signature=abc"}, b""
        if method == "GET" and path.endswith(f"/blobs/{DIGEST}"):
            return 307, {"Location": f"http://{storage.host}/bucket/blob?signature=abc"}, b""
        return 404, {}, b""

    server = _Recorder(answer)
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
    assert [(method, auth) for method, _, auth in storage.requests] == [("PUT", None)]
    assert ("POST", "/v2/ns/app/blobs/uploads/", BASIC) in registry.requests  # the registry itself got them


def test_blob_redirect_to_another_host_gets_no_authorization(registry_sending_elsewhere, storage, tmp_path):
    registry = registry_sending_elsewhere
    layout = Layout(tmp_path / "layout").init()
    desc = Descriptor("application/octet-stream", DIGEST, len(BLOB))
    download_blob(RegistryClient(registry.host), "ns/app", desc, layout, stats=TransferStats())

    assert layout.read_blob(DIGEST) == BLOB
    assert [(method, auth) for method, _, auth in storage.requests] == [("GET", None)]
    assert ("GET", f"/v2/ns/app/blobs/{DIGEST}", BASIC) in registry.requests


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
