"""The download cache under the one download policy, against real HTTP servers on loopback: a dropped
connection resumes with Range, 503 and 429 are retried (Retry-After honoured), a 404 is not."""

from __future__ import annotations

import hashlib
import os

import pytest

import cogbuild.content_store
from cogbuild.artifacts import Artifact
from cogbuild.cache import BlobCache, Unavailable
from cogbuild.http_fetch import get, new_client
from cogbuild.registry import http_policy
from http_server import LoopbackHTTPServer, Reply, Request, file_reply

WHEEL = os.urandom(3 << 20)  # a few MiB, so the drop happens well inside the body
HALF = len(WHEEL) // 2


WHEEL_PATH = "/torch-1.0-py3-none-any.whl"
DROP = Reply(200, body=WHEEL, drop_after=HALF)  # the headers and half the body, then the connection closes
FULL = Reply(200, body=WHEEL)  # ignores Range


def honour_range(request: Request) -> Reply:
    return file_reply(WHEEL, request)


def wheel_server(script: list, retry_after: str | None = None) -> LoopbackHTTPServer:
    """Serves one file; each request takes the next step of `script` (the last one repeats); an int step
    answers that status with no body (and `retry_after` if set)."""
    status_headers = {"Retry-After": retry_after} if retry_after else {}
    steps = [Reply(step, status_headers) if isinstance(step, int) else step for step in script]
    return LoopbackHTTPServer(script=steps)


def ranges(server: LoopbackHTTPServer) -> list[str | None]:
    """The Range header of each request, in order."""
    return [request.headers.get("Range") for request in server.requests]


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(http_policy, "BACKOFF", 0.01)


@pytest.fixture
def serve():
    servers: list[LoopbackHTTPServer] = []

    def start(script: list, retry_after: str | None = None) -> LoopbackHTTPServer:
        servers.append(wheel_server(script, retry_after))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _wheel(url: str) -> Artifact:
    return Artifact("wheel", "torch", "1.0", "torch-1.0-py3-none-any.whl", url,
                    hashlib.sha256(WHEEL).hexdigest(), len(WHEEL))


def _fetch(tmp_path, url: str):
    cache = BlobCache(tmp_path / "cache")
    with new_client() as client:
        return cache.fetch(_wheel(url), client)


def test_dropped_connection_resumes_with_range_and_verifies(serve, tmp_path):
    server = serve([DROP, honour_range])
    path = _fetch(tmp_path, server.url + WHEEL_PATH)
    assert path.read_bytes() == WHEEL
    assert len(ranges(server)) == 2  # one retry
    assert ranges(server)[0] is None
    resumed_at = int(ranges(server)[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= HALF  # continued from what arrived, not from the start


def test_server_ignoring_range_restarts_cleanly(serve, tmp_path):
    server = serve([DROP, FULL])
    assert _fetch(tmp_path, server.url + WHEEL_PATH).read_bytes() == WHEEL
    assert len(ranges(server)) == 2 and ranges(server)[1] is not None  # asked to resume, got the whole file


def test_503_then_200_is_retried(serve, tmp_path):
    server = serve([503, FULL])
    assert _fetch(tmp_path, server.url + WHEEL_PATH).read_bytes() == WHEEL
    assert ranges(server) == [None, None]


def test_429_waits_as_retry_after_asks(serve, tmp_path, monkeypatch):
    delays: list[float] = []
    delay = http_policy.RetryPolicy.delay
    monkeypatch.setattr(http_policy.RetryPolicy, "delay",
                        lambda self, attempt, retry_after=None: delays.append(delay(self, attempt, retry_after))
                        or delays[-1])
    server = serve([429, FULL], retry_after="1")
    assert _fetch(tmp_path, server.url + WHEEL_PATH).read_bytes() == WHEEL
    assert len(ranges(server)) == 2
    assert delays and delays[0] >= 1.0  # not the 0.01 s backoff


def test_404_is_not_retried_and_is_one_sentence(serve, tmp_path):
    server = serve([404])
    with pytest.raises(Unavailable) as failure:
        _fetch(tmp_path, server.url + WHEEL_PATH)
    message = str(failure.value)
    assert len(ranges(server)) == 1
    assert "torch-1.0-py3-none-any.whl" in message and "HTTP 404" in message and "\n" not in message
    assert not list((tmp_path / "cache").rglob(".part-*"))  # nothing half-written stays behind


def test_503_every_time_gives_up_after_the_policy_attempts(serve, tmp_path):
    server = serve([503])
    with pytest.raises(Unavailable, match=r"HTTP 503 after 5 tries"):
        _fetch(tmp_path, server.url + WHEEL_PATH)
    assert len(ranges(server)) == http_policy.ATTEMPTS


def test_retry_after_as_an_http_date_and_capped():
    policy = http_policy.RetryPolicy(attempts=3, backoff=0.0)
    assert policy.delay(0, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no extra wait
    assert policy.delay(0, "3600") == http_policy.MAX_RETRY_AFTER
    assert policy.delay(0, "soon") == 0.0


def test_small_gets_follow_the_same_policy(serve):
    """Index pages, Debian indexes and manifests go through http_fetch.get: 503 retried, 404 returned at once."""
    retried = serve([503, FULL])
    missing = serve([404])
    with new_client() as client:
        assert get(client, retried.url + WHEEL_PATH).content == WHEEL
        assert get(client, missing.url + WHEEL_PATH).status_code == 404
    assert len(ranges(retried)) == 2 and len(ranges(missing)) == 1


def test_a_verified_file_is_hashed_again_only_once_it_changed(serve, tmp_path, monkeypatch):
    server = serve([FULL])
    cache, wheel = BlobCache(tmp_path / "cache"), _wheel(server.url + WHEEL_PATH)
    with new_client() as client:
        path = cache.fetch(wheel, client)
    hashed = []
    monkeypatch.setattr(cogbuild.content_store, "file_sha256", lambda p, real=cogbuild.content_store.file_sha256:
                        hashed.append(p) or real(p))
    assert cache.get(wheel) == path and cache.verified_path(wheel) == path
    assert hashed == []  # hashed as it arrived; unchanged since
    path.write_bytes(bytes(len(WHEEL)))  # the same size, other bytes
    assert cache.get(wheel) is None and hashed == [path] and not path.exists()
