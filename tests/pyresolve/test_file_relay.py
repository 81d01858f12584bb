"""The lock's proxy relays uv's reads of wheels (pyresolve/file_relay.py): a page whose files share one
host gets them on the proxy, a HEAD or a range read is answered from that host, anything else is a
redirect to the file's own URL. Real servers on loopback."""

from __future__ import annotations

import json
from contextlib import contextmanager

import httpx
import pytest
from wheelindex import Dist, WheelIndex, build_wheel

from cogbuild.pyresolve.file_relay import FileRelay
from cogbuild.pyresolve.index import IndexClient, Page
from cogbuild.pyresolve.metadata_proxy import MetadataProxy, metadata_store
from cogbuild.pyresolve.target import Target
from cogbuild.registry import wire
from http_server import Reply, Request

X86 = Target("3.11", "x86_64", "2.36")
JSON = "application/vnd.pypi.simple.v1+json"
PROXY = "http://127.0.0.1:1"


@pytest.fixture
def lock_resolver() -> None:
    """No resolver runs here (this replaces conftest's two-engine fixture)."""


@pytest.fixture(autouse=True)
def own_connection_pool(monkeypatch):
    """The connections the relay keeps to this test's hosts are closed after it."""
    pool = wire._Pool()
    monkeypatch.setattr(wire, "_pool", pool)
    yield
    with pool.changed:
        pool.changed.wait_for(lambda: not any(pool.opening.values()), 10)
    for connection in (connection for idle in pool.idle.values() for connection in idle):
        connection.close()


@pytest.fixture
def warmed(monkeypatch) -> list[str]:
    """The origins the relay opened connections to (none are opened: the hosts here do not exist)."""
    origins: list[str] = []
    monkeypatch.setattr(wire, "warm", lambda url, count, **kwargs: origins.append(url))
    return origins


def json_page(*urls: str) -> Page:
    files = [{"filename": url.rpartition("/")[2], "url": url, "hashes": {"sha256": "ab" * 32}} for url in urls]
    return Page("https://index.example/simple/a/", JSON,
                json.dumps({"meta": {"api-version": "1.1"}, "name": "a", "files": files}).encode())


def test_a_page_whose_files_share_one_host_gets_them_on_the_proxy(warmed):
    page = json_page("https://files.example/packages/a-1.0.tar.gz", "https://files.example/packages/a-1.0.whl")
    relay = FileRelay()
    rewritten = json.loads(relay.rewrite(page, PROXY))
    assert [f["url"] for f in rewritten["files"]] == [
        f"{PROXY}/o/0/packages/a-1.0.tar.gz", f"{PROXY}/o/0/packages/a-1.0.whl"]
    original = page.json()
    assert [{**f, "url": None} for f in rewritten["files"]] == [{**f, "url": None} for f in original["files"]]
    assert relay.upstream(0, "packages/x.whl") == "https://files.example/packages/x.whl"
    assert relay.upstream(1, "packages/x.whl") is None
    assert warmed == ["https://files.example/"]
    # A second host gets a number of its own; the first host keeps its own.
    assert b"/o/1/" in relay.rewrite(json_page("https://mirror.example/a.whl"), PROXY)
    assert b"/o/0/" in relay.rewrite(json_page("https://files.example/b.whl"), PROXY)
    assert warmed == ["https://files.example/", "https://mirror.example/"]


@pytest.mark.parametrize("page", [
    json_page("https://files.example/a-1.0.whl", "https://mirror.example/a-2.0.whl"),
    json_page("https://files.example/a-1.0.whl", "../../files/a-2.0.whl"),
    Page("https://index.example/simple/a/", "text/html",
         b'<a href="https://files.example/a-1.0.whl#sha256=ab">a-1.0.whl</a>'),
], ids=["two hosts", "one relative url", "html"])
def test_other_pages_are_sent_as_the_index_sent_them(page, warmed):
    relay = FileRelay()
    assert relay.rewrite(page, PROXY) == page.content
    assert relay.origins == [] and warmed == []


class FileHost(WheelIndex):
    """A WheelIndex with absolute file URLs whose /error/ paths fail with a 500."""

    def __init__(self, directory, serve_ranges: bool = True) -> None:
        super().__init__(directory, serve_ranges=serve_ranges, absolute_urls=True)

    def _answer(self, request: Request) -> Reply:
        return Reply(500) if request.route_path.startswith("/error/") else super()._answer(request)


@pytest.fixture
def wheel(tmp_path):
    directory = tmp_path / "wheels"
    directory.mkdir()
    return build_wheel(directory, Dist("app", "1.0"))


@contextmanager
def proxied(host: FileHost, cache_root):
    """A proxy (as uv reads through it) that served app's page, and the file URL it gave."""
    client = IndexClient()
    proxy = MetadataProxy([host.url + "/simple/"], X86, client, metadata_store(cache_root), serve_metadata=False)
    with client, proxy:
        page = httpx.get(proxy.index_url(0) + "app/")
        assert page.headers["content-type"] == JSON
        [url] = [f["url"] for f in page.json()["files"]]
        yield proxy, url


@pytest.fixture
def relayed(wheel, cache_root):
    with FileHost(wheel.parent) as host, proxied(host, cache_root) as (proxy, url), \
            httpx.Client(follow_redirects=False) as http:
        yield host, proxy, url, http


def test_the_proxy_answers_a_head_with_the_files_length_from_a_range_read(relayed, wheel):
    host, proxy, url, http = relayed
    assert url == f"{proxy.base_url}/o/0/files/{wheel.name}"
    head = http.head(url)
    assert (head.status_code, head.headers["content-length"], head.headers["accept-ranges"]) == \
        (200, str(wheel.stat().st_size), "bytes")
    assert [r.method for r in host.requests if r.route_path.startswith("/files/")] == ["GET"]


@pytest.mark.parametrize("head_first", [False, True], ids=["range reads", "head then range reads"])
def test_the_proxy_relays_range_reads_with_the_hosts_bytes(relayed, wheel, head_first):
    host, proxy, url, http = relayed
    data, size = wheel.read_bytes(), wheel.stat().st_size
    if head_first:
        assert http.head(url).status_code == 200
    for asked, first, last in [(f"bytes={size - 22}-", size - 22, size - 1), ("bytes=-30", size - 30, size - 1),
                               ("bytes=0-3", 0, 3), (f"bytes=10-{size + 50}", 10, size - 1)]:
        part = http.get(url, headers={"Range": asked})
        assert (part.status_code, part.headers["content-range"]) == (206, f"bytes {first}-{last}/{size}"), asked
        assert part.content == data[first:last + 1], asked


def test_a_whole_file_is_a_redirect_to_the_host(relayed, wheel):
    host, proxy, url, http = relayed
    whole = http.get(url)
    assert (whole.status_code, whole.headers["location"]) == (302, f"{host.url}/files/{wheel.name}")
    assert not any(r.route_path.startswith("/files/") for r in host.requests)  # the proxy did not ask for it


def test_a_pep_658_metadata_file_is_relayed_whole(relayed, wheel):
    """PyPI serves each wheel's METADATA beside it; uv then asks for that instead of ranges of the wheel."""
    host, proxy, url, http = relayed
    metadata = b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\n"
    wheel.with_name(wheel.name + ".metadata").write_bytes(metadata)
    answer = http.get(url + ".metadata")
    assert (answer.status_code, answer.content) == (200, metadata)
    assert host.requests[-1].route_path == f"/files/{wheel.name}.metadata"


@pytest.mark.parametrize("path", ["files/missing.whl", "error/app.whl"], ids=["404", "500"])
@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_a_failing_host_is_a_redirect_to_it(relayed, path, method):
    host, proxy, url, http = relayed
    answer = http.request(method, f"{proxy.base_url}/o/0/{path}", headers={"Range": "bytes=0-99"})
    assert (answer.status_code, answer.headers["location"]) == (302, f"{host.url}/{path}")
    assert host.requests[-1].route_path == f"/{path}"


def test_a_host_number_the_proxy_never_gave_is_not_found(relayed):
    host, proxy, url, http = relayed
    assert http.get(f"{proxy.base_url}/o/99/files/app.whl", headers={"Range": "bytes=0-9"}).status_code == 404
    assert http.head(f"{proxy.base_url}/o/99/files/app.whl").status_code == 404


def test_a_host_that_ignores_ranges_is_relayed_as_it_answered(wheel, cache_root):
    with FileHost(wheel.parent, serve_ranges=False) as host, proxied(host, cache_root) as (proxy, url):
        head = httpx.head(url)
        assert (head.status_code, head.headers["content-length"]) == (200, str(wheel.stat().st_size))
        part = httpx.get(url, headers={"Range": "bytes=0-9"})
        assert (part.status_code, part.content) == (200, wheel.read_bytes())


def test_with_an_http_proxy_configured_uv_asks_the_file_hosts_itself(wheel, cache_root, monkeypatch):
    """The relay connects directly; where the user routes HTTP through a proxy, nothing may."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # this test's index is reached directly by httpx
    with FileHost(wheel.parent) as host, IndexClient() as client, \
            MetadataProxy([host.url + "/simple/"], X86, client, metadata_store(cache_root), serve_metadata=False) as proxy:
        [url] = [f["url"] for f in httpx.get(proxy.index_url(0) + "app/").json()["files"]]
    assert url == f"{host.url}/files/{wheel.name}"
