"""After uv answers, a lock reads only the files uv listed from the pages it read (index.py): the same files,
in the same order, as parsing each page whole would give, and the whole parse wherever a page is not written
the way the shortcut can read."""

from __future__ import annotations

import hashlib
import json
import threading
from urllib.request import urlopen

import pytest
from http_server import LoopbackHTTPServer, Reply, Request

from cogbuild.pyresolve import Target
from cogbuild.pyresolve import index as index_module
from cogbuild.pyresolve.index import ABSENT, IndexClient, Page, light_page_digest
from cogbuild.pyresolve.metadata_proxy import MetadataProxy, _absolute_urls_only, metadata_store

JSON_PAGE = "application/vnd.pypi.simple.v1+json"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def pypi_files(count: int = 30) -> list[dict]:
    """Entries as PyPI writes them: core-metadata (a nested object) before the file name, sorted keys."""
    files = []
    for number in range(count):
        filename = f"demo-1.{number}-py3-none-any.whl" if number % 3 else f"demo-1.{number}.tar.gz"
        files.append({"core-metadata": {"sha256": sha("metadata" + filename)}, "filename": filename,
                      "hashes": {"sha256": sha(filename)}, "requires-python": ">=3.8", "size": 1000 + number,
                      "url": f"https://files.example/{filename}", "yanked": number == 7})
    return files


def page(files: list[dict], **dumps_options) -> bytes:
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "demo", "files": files}, **dumps_options).encode()


def serve(body: bytes) -> LoopbackHTTPServer:
    return LoopbackHTTPServer(lambda request: Reply(200, {"Content-Type": JSON_PAGE}, body))


def files_both_ways(server: LoopbackHTTPServer, hashes: set[str], *, read_ahead: bool = False):
    """(the shortcut's answer, the answer from parsing the page whole) for the same hashes; read_ahead: the
    shortcut's client found where the page's hashes stand first, as a lock does while uv resolves."""
    index = server.url + "/simple/"
    with IndexClient() as client:
        if read_ahead:
            client.read_ahead(index, "demo")
        shortcut = client.files_with_sha256(index, "demo", hashes)
    with IndexClient() as client:
        whole = [f for f in client.project_files(index, "demo") or [] if f.sha256 is None or f.sha256 in hashes]
    return shortcut, whole


@pytest.mark.parametrize("read_ahead", [False, True])
def test_the_files_with_listed_hashes_match_a_whole_parse_in_page_order(read_ahead):
    files = pypi_files()
    hashes = {files[n]["hashes"]["sha256"] for n in (20, 4, 7, 2)}
    with serve(page(files)) as server:
        shortcut, whole = files_both_ways(server, hashes, read_ahead=read_ahead)
    assert shortcut == whole
    assert [f.filename for f in shortcut] == [files[n]["filename"] for n in (2, 4, 7, 20)]
    assert shortcut[2].yanked and shortcut[0].size == 1002 and shortcut[0].requires_python == ">=3.8"


def test_a_file_listed_twice_is_found_twice():
    files = pypi_files(6)
    files.append({**files[4], "url": "https://mirror.example/again.whl"})
    with serve(page(files)) as server:
        shortcut, whole = files_both_ways(server, {files[4]["hashes"]["sha256"]})
    assert shortcut == whole and len(shortcut) == 2


@pytest.mark.parametrize("read_ahead", [False, True])
@pytest.mark.parametrize("change", ["no sha256", "upper case", "compact", "other hash first"])
def test_a_page_the_shortcut_cannot_read_is_parsed_whole(change, read_ahead):
    files = pypi_files()
    options: dict = {}
    if change == "no sha256":
        files[5]["hashes"] = {}
    elif change == "upper case":
        files[4]["hashes"]["sha256"] = files[4]["hashes"]["sha256"].upper()
    elif change == "compact":
        options = {"separators": (",", ":")}
    else:
        files[4]["hashes"] = {"blake2b_256": sha("b"), "sha256": files[4]["hashes"]["sha256"]}
    hashes = {sha(files[n]["filename"]) for n in (4, 5, 8)}
    with serve(page(files, **options)) as server:
        shortcut, whole = files_both_ways(server, hashes, read_ahead=read_ahead)
    assert shortcut == whole
    assert {f.filename for f in shortcut} >= {files[4]["filename"], files[8]["filename"]}


@pytest.mark.parametrize("change, hashed", [(None, True), ("no sha256", False), ("not hex", False),
                                            ("compact", True)])
def test_every_file_hashed_reads_like_the_whole_parse(change, hashed):
    files = pypi_files()
    options: dict = {}
    if change == "no sha256":
        files[9]["hashes"] = {"md5": "0" * 32}
    elif change == "not hex":
        files[9]["hashes"]["sha256"] = "z" * 64
    elif change == "compact":
        options = {"separators": (",", ":")}
    with serve(page(files, **options)) as server, IndexClient() as client:
        assert client.every_file_hashed(server.url + "/simple/", "demo") is hashed


def test_a_missing_page_has_no_files_and_hides_nothing():
    def route(request: Request) -> Reply:
        return Reply(404, body=b"no such project")

    with LoopbackHTTPServer(route) as server, IndexClient() as client:
        assert client.files_with_sha256(server.url + "/simple/", "demo", {sha("x")}) is None
        assert client.every_file_hashed(server.url + "/simple/", "demo")


def test_a_pypi_style_page_is_not_parsed_whole(monkeypatch):
    files = pypi_files()

    def whole_parse(response):
        raise AssertionError("the page was parsed whole")

    with serve(page(files)) as server, IndexClient() as client:
        monkeypatch.setattr("cogbuild.pyresolve.index._files_on_page", whole_parse)
        found = client.files_with_sha256(server.url + "/simple/", "demo", {files[10]["hashes"]["sha256"]})
        assert [f.filename for f in found or []] == [files[10]["filename"]]
        assert client.every_file_hashed(server.url + "/simple/", "demo")


def test_the_light_page_digest_is_the_clients_and_says_absent_for_a_missing_page():
    body = page(pypi_files(4))
    with serve(body) as server, IndexClient() as client:
        index = server.url + "/simple/"
        client.page_response(index, "demo")
        assert light_page_digest(index, "Demo") == client.page_digests[(index, "demo")]
    with LoopbackHTTPServer(lambda request: Reply(404)) as server:
        assert light_page_digest(server.url + "/simple/", "demo") == ABSENT


@pytest.mark.parametrize("reply", [Reply(302, {"Location": "/elsewhere/"}), Reply(503), Reply(401)])
def test_the_light_page_digest_leaves_redirects_and_refusals_to_the_client(reply):
    with LoopbackHTTPServer(lambda request: reply) as server:
        assert light_page_digest(server.url + "/simple/", "demo") is None


def test_the_light_page_digest_leaves_a_configured_proxy_to_the_client(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with serve(page(pypi_files(2))) as server:
        assert light_page_digest(server.url + "/simple/", "demo") is None
        assert server.requests == []


ABSOLUTE = '<a href="https://files.example/a-1.0.tar.gz">a</a>'


@pytest.mark.parametrize("content_type, body, absolute", [
    (JSON_PAGE, page(pypi_files(3)).decode(), True),
    (JSON_PAGE, page([*pypi_files(3), {**pypi_files(1)[0], "url": "../files/x.whl"}]).decode(), False),
    (JSON_PAGE, page(pypi_files(3), separators=(",", ":")).decode(), True),
    (JSON_PAGE, page([{**pypi_files(1)[0], "url": "/x.whl"}], separators=(",", ":")).decode(), False),
    ("text/html", ABSOLUTE * 3, True),
    ("text/html", ABSOLUTE + "<a href='http://files.example/b.whl'>b</a>", True),
    ("text/html", ABSOLUTE + '<A HREF="/files/b.whl">b</A>', False),
    ("text/html", ABSOLUTE + '<a href = "files/b.whl">b</a>', False),
])
def test_the_proxy_passes_a_page_through_only_when_every_file_url_is_absolute(content_type, body, absolute):
    assert _absolute_urls_only(Page("https://index.example/simple/a/", content_type, body.encode())) is absolute


def test_entries_with_characters_beyond_ascii_are_read_whole():
    files = pypi_files(5)
    files[3] = {**files[3], "filename": "démo-1.3-py3-none-any.whl", "requires-python": "≥3.8 ✓" * 40}
    files[3]["hashes"] = {"sha256": sha(files[3]["filename"])}
    hashes = {files[3]["hashes"]["sha256"], files[1]["hashes"]["sha256"]}
    with serve(page(files, ensure_ascii=False)) as server:
        shortcut, whole = files_both_ways(server, hashes)
    assert shortcut == whole and [f.filename for f in shortcut] == [files[1]["filename"], "démo-1.3-py3-none-any.whl"]


def test_the_proxy_finds_where_a_served_pages_hashes_stand_while_the_resolver_works(monkeypatch, tmp_path):
    files = pypi_files()
    found_in: list[str] = []
    found = threading.Event()
    real_places = index_module._sha256_places

    def recorded_places(content: bytes):
        found_in.append(threading.current_thread().name)
        places = real_places(content)
        found.set()
        return places

    monkeypatch.setattr(index_module, "_sha256_places", recorded_places)
    with serve(page(files)) as server, IndexClient() as client:
        index = server.url + "/simple/"
        with MetadataProxy([index], Target("3.11", "x86_64", "2.36"), client, metadata_store(tmp_path),
                           serve_metadata=False) as proxy:
            with urlopen(proxy.index_url(0) + "demo/") as response:  # the same entries, file URLs on the proxy
                served = json.loads(response.read())["files"]
            assert [{**entry, "url": None} for entry in served] == [{**entry, "url": None} for entry in files]
            assert all(entry["url"].startswith(proxy.base_url + "/o/0/") for entry in served)
            assert found.wait(30), "the proxy never looked for the page's hashes"
            proxy.pool.shutdown(wait=True)  # and kept what it found
        listed = client.files_with_sha256(index, "demo", {files[12]["hashes"]["sha256"]})
    assert [f.filename for f in listed or []] == [files[12]["filename"]]
    assert len(found_in) == 1 and found_in[0].startswith("metadata-proxy")
