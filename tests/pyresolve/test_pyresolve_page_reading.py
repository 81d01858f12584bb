"""After uv answers, a lock reads only the files uv listed from the pages it read (index.py): the same files,
in the same order, as parsing each page whole would give, and the whole parse wherever a page is not written
the way the shortcut can read."""

from __future__ import annotations

import hashlib
import json
from urllib.request import urlopen

import pytest
from http_server import LoopbackHTTPServer, Reply, Request

from packaging.utils import parse_sdist_filename, parse_wheel_filename

from cogbuild.pyresolve import Target, wheels_for_lockfile
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


def files_both_ways(server: LoopbackHTTPServer, hashes: set[str]):
    """(the shortcut's answer, the answer from parsing the page whole) for the same hashes."""
    index = server.url + "/simple/"
    with IndexClient() as client:
        shortcut = client.files_with_sha256(index, "demo", hashes)
    with IndexClient() as client:
        whole = [f for f in client.project_files(index, "demo") or [] if f.sha256 is None or f.sha256 in hashes]
    return shortcut, whole


def test_the_files_with_listed_hashes_match_a_whole_parse_in_page_order():
    files = pypi_files()
    hashes = {files[n]["hashes"]["sha256"] for n in (20, 4, 7, 2)}
    with serve(page(files)) as server:
        shortcut, whole = files_both_ways(server, hashes)
    assert shortcut == whole
    assert [f.filename for f in shortcut] == [files[n]["filename"] for n in (2, 4, 7, 20)]
    assert shortcut[2].yanked and shortcut[0].size == 1002 and shortcut[0].requires_python == ">=3.8"


def test_a_file_listed_twice_is_found_twice():
    files = pypi_files(6)
    files.append({**files[4], "url": "https://mirror.example/again.whl"})
    with serve(page(files)) as server:
        shortcut, whole = files_both_ways(server, {files[4]["hashes"]["sha256"]})
    assert shortcut == whole and len(shortcut) == 2


@pytest.mark.parametrize("change", ["no sha256", "upper case", "compact", "other hash first"])
def test_a_page_the_shortcut_cannot_read_is_parsed_whole(change):
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
        shortcut, whole = files_both_ways(server, hashes)
    assert shortcut == whole
    assert {f.filename for f in shortcut} >= {files[4]["filename"], files[8]["filename"]}


# "not hex": every file has its sha256 entry, so the page counts as hashed though a whole parse says not: the
# values' form is checked where they are used (decoded entries through _checked_sha256, downloads).
@pytest.mark.parametrize("change, hashed", [(None, True), ("no sha256", False), ("not hex", True),
                                            ("compact", True), ("other hash first", True)])
def test_every_file_hashed_reads_like_the_whole_parse(change, hashed):
    files = pypi_files()
    options: dict = {}
    if change == "no sha256":
        files[9]["hashes"] = {"md5": "0" * 32}
    elif change == "not hex":
        files[9]["hashes"]["sha256"] = "z" * 64
    elif change == "compact":
        options = {"separators": (",", ":")}
    elif change == "other hash first":
        files[9]["hashes"] = {"blake2b_256": sha("b"), "sha256": files[9]["hashes"]["sha256"]}
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

    with serve(page(files)) as server, IndexClient() as client:
        monkeypatch.setattr(index_module, "_files_on_page", parse_whole_refused)
        found = client.files_with_sha256(server.url + "/simple/", "demo", {files[10]["hashes"]["sha256"]})
        assert [f.filename for f in found or []] == [files[10]["filename"]]
        found = client.release_files(server.url + "/simple/", "demo", "1.10", {files[10]["hashes"]["sha256"]})
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


def test_the_proxy_leaves_a_served_page_unread_while_the_resolver_works(monkeypatch, tmp_path):
    files = pypi_files()
    places_found: list[bytes] = []
    monkeypatch.setattr(index_module, "_sha256_places", lambda content: places_found.append(content))
    with serve(page(files)) as server, IndexClient() as client:
        index = server.url + "/simple/"
        with MetadataProxy([index], Target("3.11", "x86_64", "2.36"), client, metadata_store(tmp_path),
                           serve_metadata=False) as proxy:
            with urlopen(proxy.index_url(0) + "demo/") as response:  # the same entries, file URLs on the proxy
                served = json.loads(response.read())["files"]
            assert [{**entry, "url": None} for entry in served] == [{**entry, "url": None} for entry in files]
            assert all(entry["url"].startswith(proxy.base_url + "/o/0/") for entry in served)
        monkeypatch.setattr(index_module, "_files_on_page", parse_whole_refused)
        assert client.every_file_hashed(index, "demo")  # from the page the proxy fetched, without a parse
    assert places_found == []


def parse_whole_refused(page):
    raise AssertionError("the page was parsed whole")


def wheel(name_version: str, tag: str = "py3-none-any") -> dict:
    """A PyPI-written entry for the wheel `<name_version>-<tag>.whl`."""
    return entry(f"{name_version}-{tag}.whl")


def entry(filename: str) -> dict:
    return {"core-metadata": {"sha256": sha("metadata" + filename)}, "filename": filename,
            "hashes": {"sha256": sha(filename)}, "requires-python": ">=3.8", "size": len(filename),
            "url": f"https://files.example/{filename}", "yanked": False}


def release_both_ways(body: bytes, name: str, version: str, hashes: set[str], may_fit=lambda filename: True):
    """(release_files' answer, a whole parse's files of `name`==`version` with those hashes that may_fit takes)."""
    with serve(body) as server:
        index = server.url + "/simple/"
        with IndexClient() as client:
            whole = [f for f in client.project_files(index, name) or []
                     if f.sha256 in hashes and may_fit(f.filename) and release_of(f.filename) == (name, version)]
        with IndexClient() as client:
            found = client.release_files(index, name, version, hashes, may_fit)
    return found, whole


def release_of(filename: str) -> tuple[str, str]:
    if filename.endswith(".whl"):
        name, version, _, _ = parse_wheel_filename(filename)
    else:
        name, version = parse_sdist_filename(filename)
    return name, str(version)


DEMO_RELEASES = [
    entry("demo-1.2.tar.gz"),
    wheel("demo-1.1"),
    wheel("demo-1.2", "cp311-cp311-manylinux_2_17_x86_64"),
    wheel("demo_extra-1.2"),  # another project whose name starts like demo's
    wheel("demo-extra-1.2", "py2-none-any"),
    wheel("demo-1.20"),  # another version whose text starts like 1.2
    entry("demo-1.2.1.tar.gz"),
    wheel("demo-1.2", "cp311-cp311-macosx_11_0_arm64"),
    wheel("demo-1.2"),
]


def test_a_releases_files_are_found_by_name_as_a_whole_parse_finds_them():
    wanted = ["demo-1.2.tar.gz", "demo-1.2-cp311-cp311-manylinux_2_17_x86_64.whl", "demo-1.2-py3-none-any.whl"]
    found, whole = release_both_ways(page(DEMO_RELEASES), "demo", "1.2", {sha(name) for name in wanted})
    assert found == whole and [f.filename for f in found or []] == wanted  # page order
    assert found[1].size == len(wanted[1]) and found[1].url == "https://files.example/" + wanted[1]


def test_names_written_in_any_case_and_separators_count_for_the_project():
    names = ["zope_interface-5.0-cp311-cp311-manylinux_2_17_x86_64.whl", "zope.interface-5.0.tar.gz",
             "Zope.Interface-5.0-py3-none-any.whl"]
    body = page([wheel("zope.interface-4.9"), *map(entry, names), wheel("zope.interface.extra-5.0")])
    found, whole = release_both_ways(body, "zope-interface", "5.0", {sha(name) for name in names})
    assert found == whole and [f.filename for f in found or []] == names


def test_a_file_the_caller_says_cannot_fit_is_left_out():
    wanted = ["demo-1.2.tar.gz", "demo-1.2-cp311-cp311-macosx_11_0_arm64.whl", "demo-1.2-py3-none-any.whl"]
    found, whole = release_both_ways(page(DEMO_RELEASES), "demo", "1.2", {sha(name) for name in wanted},
                                     may_fit=lambda filename: "macosx" not in filename)
    assert found == whole and [f.filename for f in found or []] == [wanted[0], wanted[2]]


@pytest.mark.parametrize("unnamed", ["demo-1.2.0-py3-none-any.whl", "demo_extra-1.2-py3-none-any.whl",
                                     "absent-1.2-py3-none-any.whl"])
def test_a_hash_not_found_by_name_leaves_the_release_to_the_hash_lookup(unnamed):
    body = page([*DEMO_RELEASES, entry("demo-1.2.0-py3-none-any.whl")])
    with serve(body) as server, IndexClient() as client:
        assert client.release_files(server.url + "/simple/", "demo", "1.2", {sha("demo-1.2.tar.gz"), sha(unnamed)}) \
            is None


def test_a_page_parsed_already_is_not_searched_by_name():
    with serve(page(DEMO_RELEASES)) as server, IndexClient() as client:
        index = server.url + "/simple/"
        assert client.release_files(index, "demo", "1.2", {sha("demo-1.2.tar.gz")}) is not None
        client.project_files(index, "demo")
        assert client.release_files(index, "demo", "1.2", {sha("demo-1.2.tar.gz")}) is None


@pytest.mark.parametrize("x86_wheel", ["demo-1.2-cp311-cp311-manylinux_2_17_x86_64.whl",  # found by name
                                       "demo-1.2.0-cp311-cp311-manylinux_2_17_x86_64.whl"])  # by hash only
def test_a_lockfile_pin_gets_its_wheel_found_by_name_or_else_by_hash(tmp_path, x86_wheel):
    arm_wheel = "demo-1.2-cp311-cp311-macosx_11_0_arm64.whl"
    body = page([wheel("demo-1.1", "cp311-cp311-manylinux_2_17_x86_64"), entry(arm_wheel), entry(x86_wheel)])
    with serve(body) as server:
        lock = tmp_path / "requirements.lock"
        lock.write_text(f"--index-url {server.url}/simple/\n"
                        f"demo==1.2 --hash=sha256:{sha(arm_wheel)} --hash=sha256:{sha(x86_wheel)}\n")
        [artifact] = wheels_for_lockfile(lock, Target("3.11", "x86_64", "2.36"))
    assert (artifact.filename, artifact.sha256, artifact.size) == (x86_wheel, sha(x86_wheel), len(x86_wheel))


def test_closing_the_client_lets_go_of_its_pages():
    with serve(page(pypi_files(3))) as server:
        index = server.url + "/simple/"
        client = IndexClient()
        client.project_files(index, "demo")
        assert client.has_page(index, "demo")
        client.close()
        assert not client.has_page(index, "demo")
