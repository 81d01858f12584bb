"""uv as the resolver: it answers wheel closures for the image as pip does, and pip keeps the rest."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys

import httpx
import pytest
from wheelindex import Dist, WheelIndex, build_wheel

from cogbuild.errors import CogbuildError, UsageError
from cogbuild.pyresolve import Target, resolve_requirements
from cogbuild.pyresolve import resolution as resolution_module
from cogbuild.pyresolve import uv_runner
from cogbuild.pyresolve.index import IndexClient
from cogbuild.pyresolve.metadata_proxy import MetadataProxy, metadata_store
from cogbuild.pyresolve.uv_runner import UvRun, usable_uv, uv_platform
from cogbuild.resolve import LockSources
from cogbuild.settings import Settings

X86 = Target("3.11", "x86_64", "2.36")
ARM = Target("3.11", "aarch64", "2.36")
COMMON = ["purelib", "fastmath", "markers", "withextra[more]", "stable"]


@pytest.fixture
def lock_resolver() -> str:
    """Here uv resolves (this replaces conftest's two-engine fixture)."""
    return "uv"


@pytest.fixture
def pip_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("pip ran, but uv was to resolve these requirements")

    monkeypatch.setattr(resolution_module, "run_pip", refuse)


def resolve_with_pip_alone(monkeypatch: pytest.MonkeyPatch, *args, **kwargs):
    return resolve_requirements(*args, **kwargs, uv=False)


@pytest.mark.parametrize("target, requirements, fastmath", [
    (X86, [*COMMON, "x86only"], "fastmath-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"),
    (ARM, COMMON, "fastmath-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"),
])
def test_uv_pins_the_same_files_with_the_same_parents_as_pip(simple_url, monkeypatch, target, requirements,
                                                             fastmath):
    by_pip = resolve_with_pip_alone(monkeypatch, requirements, target, index_url=simple_url)
    monkeypatch.setattr(resolution_module, "run_pip", lambda *args: pytest.fail("pip ran instead of uv"))
    by_uv = resolve_requirements(requirements, target, index_url=simple_url)
    assert by_uv == by_pip
    assert [a.required_by for a in by_uv] == [a.required_by for a in by_pip]
    assert {a.name: a.filename for a in by_uv}["fastmath"] == fastmath


def test_a_constraint_narrows_uv_but_is_no_parent(simple_url, pip_refused):
    artifacts = resolve_requirements(["purelib"], X86, index_url=simple_url, constraints=["helper<2"])
    assert {a.name: (a.version, a.required_by) for a in artifacts} == {
        "helper": ("1.0", ("purelib",)), "purelib": ("1.0", ("request",))}


def test_uv_settings_of_this_host_do_not_reach_the_lock(simple_url, pip_refused, monkeypatch, tmp_path):
    host_constraints = tmp_path / "host-constraints.txt"
    host_constraints.write_text("helper<2\n")
    monkeypatch.setenv("UV_CONSTRAINT", str(host_constraints))
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple/")
    artifacts = resolve_requirements(["purelib"], X86, index_url=simple_url)
    assert {a.name: a.version for a in artifacts} == {"helper": "2.0", "purelib": "1.0"}


def test_uv_resolves_with_this_interpreter_and_no_python_on_path(simple_url, pip_refused, monkeypatch, tmp_path):
    """uv is handed the interpreter the lock runs on: it searches PATH for none (a pyenv shim there is slow)."""
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no python, no pyenv shim
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.chdir(tmp_path)  # nor a .venv around the working directory
    artifacts = resolve_requirements(["purelib"], X86, index_url=simple_url)
    assert {a.name: a.version for a in artifacts} == {"helper": "2.0", "purelib": "1.0"}


def test_what_uv_cannot_answer_goes_to_pip(simple_url):
    # A conflict: uv fails, pip resolves again and explains, naming both sides.
    with pytest.raises(CogbuildError, match="helper"):
        resolve_requirements(["withextra[more]", "helper>=2"], X86, index_url=simple_url)
    assert uv_platform(X86) == "x86_64-manylinux_2_36"
    assert uv_platform(Target("3.11", "x86_64", "2.41")) == "x86_64-manylinux_2_40"  # uv has no 2_41


def test_a_wheel_only_a_glibc_newer_than_uvs_allows_sends_the_lock_to_pip(own_index, monkeypatch):
    wheels, url = own_index
    build_wheel(wheels, Dist("newglibc", "0.9", "cp311-cp311-manylinux_2_17_x86_64"))
    build_wheel(wheels, Dist("newglibc", "1.0", "cp311-cp311-manylinux_2_41_x86_64"))
    build_wheel(wheels, Dist("newglibc", "1.1", "cp311-cp311-manylinux_2_41_aarch64"))
    trixie = Target("3.11", "x86_64", "2.41")
    with monkeypatch.context() as patch:  # uv alone (at manylinux_2_40) would miss 1.0
        patch.setattr(resolution_module, "run_pip", lambda *args: pytest.fail("pip ran"))
        with pytest.raises(BaseException, match="pip ran"):
            resolve_requirements(["newglibc"], trixie, index_url=url)
    assert [a.filename for a in resolve_requirements(["newglibc"], trixie, index_url=url)] == [
        "newglibc-1.0-cp311-cp311-manylinux_2_41_x86_64.whl"]
    # Where no wheel needs more than uv's level, uv's answer stands.
    with monkeypatch.context() as patch:
        patch.setattr(resolution_module, "run_pip", lambda *args: pytest.fail("pip ran"))
        assert [a.version for a in resolve_requirements(["newglibc"], X86, index_url=url)] == ["0.9"]


def test_the_resolver_setting_reaches_the_lock_and_an_unknown_one_is_one_sentence(tmp_path):
    def sources(value: str) -> LockSources:
        environ = {"COGBUILD_LOCK_RESOLVER": value, "HOME": str(tmp_path)}
        return LockSources.from_settings(Settings.from_environ(environ))

    assert (sources("uv").uv, sources("pip").uv) == (True, False)
    with pytest.raises(UsageError, match=r"^COGBUILD_LOCK_RESOLVER is 'poetry'; it must be uv or pip\.$"):
        sources("poetry")


@pytest.fixture
def own_index(tmp_path):
    """An index whose contents a test changes between locks."""
    directory = tmp_path / "wheels"
    directory.mkdir()
    server = WheelIndex(directory)
    yield directory, server.url + "/simple/"
    server.close()


def test_a_warm_lock_reuses_uv_closure_only_while_the_pages_it_read_are_unchanged(own_index, pip_refused,
                                                                                    monkeypatch, cache_root):
    wheels, url = own_index
    build_wheel(wheels, Dist("app", "1.0"))
    build_wheel(wheels, Dist("app", "2.0", requires=["newdep"]))  # newdep is not on the index: app 1.0 wins
    cold = resolve_requirements(["app"], X86, index_url=url, cache_root=cache_root)
    assert [(a.name, a.version, a.required_by) for a in cold] == [("app", "1.0", ("request",))]

    with monkeypatch.context() as patch:  # warm: the same pages, so no resolver runs
        patch.setattr(uv_runner, "UvRun", lambda *args, **kwargs: pytest.fail("uv ran"))
        assert resolve_requirements(["app"], X86, index_url=url, cache_root=cache_root) == cold

    # newdep's page was read as missing; now it exists, and the recorded closure is not taken.
    build_wheel(wheels, Dist("newdep", "1.0"))
    after = resolve_requirements(["app"], X86, index_url=url, cache_root=cache_root)
    assert [(a.name, a.version, a.required_by) for a in after] == [
        ("app", "2.0", ("request",)), ("newdep", "1.0", ("app",))]


def test_a_warm_lock_asks_for_its_pages_without_the_http_client(own_index, pip_refused, monkeypatch, cache_root):
    """The warm check goes through the standard library: httpx (0.2 s of imports) is not needed."""
    wheels, url = own_index
    build_wheel(wheels, Dist("app", "1.0"))
    cold = resolve_requirements(["app"], X86, index_url=url, cache_root=cache_root)
    monkeypatch.setattr(IndexClient, "http", property(lambda client: pytest.fail("the httpx client was made")))
    assert resolve_requirements(["app"], X86, index_url=url, cache_root=cache_root) == cold


def test_a_corrupt_resolution_record_is_not_believed(own_index, pip_refused, cache_root):
    wheels, url = own_index
    build_wheel(wheels, Dist("app", "1.0"))
    cold = resolve_requirements(["app"], X86, index_url=url, cache_root=cache_root)
    [record] = [path for path in (cache_root / "uv-resolutions").rglob("*")
                if path.is_file() and "refs" not in path.parts]
    record.write_bytes(record.read_bytes().replace(b'"1.0"', b'"9.9"'))
    assert resolve_requirements(["app"], X86, index_url=url, cache_root=cache_root) == cold


@pytest.mark.parametrize("page_path", ["/simple/", "/html/"])
def test_uv_gets_a_page_of_absolute_urls_with_its_files_on_the_proxy_and_pins_the_upstream_urls(
        tmp_path, pip_refused, page_path, cache_root):
    """An HTML page passes as the index sent it; a JSON page has its files' host replaced by the proxy's
    (file_relay), its entries otherwise the same. The lock names the index's URLs all the same."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels, Dist("app", "1.0", requires=["dep"]))
    build_wheel(wheels, Dist("dep", "2.0"))
    with WheelIndex(wheels, absolute_urls=True) as absolute, WheelIndex(wheels) as relative:
        for server in (absolute, relative):
            upstream = server.url + page_path
            with IndexClient() as client, MetadataProxy([upstream], X86, client, metadata_store(cache_root),
                                                                serve_metadata=False) as proxy:
                sent = client.page_response(upstream, "app")
                assert sent is not None
                served = httpx.get(proxy.index_url(0) + "app/")
                if server is relative:  # the proxy's own page
                    assert served.headers["content-type"] == "application/vnd.pypi.simple.v1+json"
                    assert served.content != sent.content
                elif page_path == "/html/":
                    assert (served.content, served.headers["content-type"]) == (sent.content, sent.content_type)
                else:
                    assert served.headers["content-type"] == sent.content_type
                    assert served.json() == json.loads(sent.content.replace(
                        f"{absolute.url}/".encode(), f"{proxy.base_url}/o/0/".encode()))
                    assert all(f["url"].startswith(f"{proxy.base_url}/o/0/files/") for f in served.json()["files"])
        artifacts = resolve_requirements(["app"], X86, index_url=absolute.url + page_path, cache_root=cache_root)
    assert [(a.name, a.version, a.url) for a in artifacts] == [
        ("app", "1.0", f"{absolute.url}/files/app-1.0-py3-none-any.whl"),
        ("dep", "2.0", f"{absolute.url}/files/dep-2.0-py3-none-any.whl")]


# Reports which of the resolver's heavy modules were loaded when uv was started, and the pins.
UV_START_PROBE = """
import json, subprocess, sys
from pathlib import Path
heavy = ("packaging.requirements", "packaging.tags", "http.server", "ssl", "cogbuild.pyresolve.resolution",
         "cogbuild.pyresolve.metadata_proxy", "cogbuild.pyresolve.index")
loaded_at_uv_start = []
class Probe(subprocess.Popen):
    def __init__(self, args, *rest, **kwargs):
        if "compile" in args:
            loaded_at_uv_start.append(sorted(m for m in heavy if m in sys.modules))
        super().__init__(args, *rest, **kwargs)
subprocess.Popen = Probe
from cogbuild.pyresolve import Target, resolve_requirements
artifacts = resolve_requirements(["purelib"], Target("3.11", "x86_64", "2.36"), index_url=sys.argv[1],
                                 cache_root=Path(sys.argv[2]))
print(json.dumps({"pins": [a.name for a in artifacts], "loaded_at_uv_start": loaded_at_uv_start}))
"""


def test_uv_starts_before_the_rest_of_the_resolver_loads(simple_url, tmp_path):
    """A cold lock starts uv from the lines alone, so uv's start-up (0.15 s) and the loading of packaging,
    the index client and the proxy (0.1 s) overlap instead of adding up (issue 15)."""
    done = subprocess.run([sys.executable, "-c", UV_START_PROBE, simple_url, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "purelib" in report["pins"]
    assert report["loaded_at_uv_start"] == [[]]  # uv ran once, and before any of them was loaded


def test_leaving_a_uv_run_early_stops_uv(tmp_path):
    """uv asks an index that accepts its connection and never answers; the block is left meanwhile."""
    uv = usable_uv(X86)
    assert uv is not None
    requirements = tmp_path / "requirements.in"
    requirements.write_text("app\n")
    with UvRun(uv, X86, requirements, tmp_path, index_urls=["https://index.example/simple/"], constraints_file=None,
               cache_root=tmp_path / "cache") as run:
        run.listener.settimeout(60)  # nothing serves the proxy's port: uv is left waiting for a page
        connection, _ = run.listener.accept()
    connection.close()
    assert run.process.returncode == -signal.SIGKILL
    assert not run.output.exists()


def test_the_proxy_answers_several_requests_on_one_connection(tmp_path, cache_root):
    """Keep-alive: a connection per page made uv more than twice as slow through the proxy."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels, Dist("app", "1.0"))
    with WheelIndex(wheels, absolute_urls=True) as index, IndexClient() as client, \
            MetadataProxy([index.url + "/simple/"], X86, client, metadata_store(cache_root), serve_metadata=False) as proxy:
        connection = http.client.HTTPConnection("127.0.0.1", int(proxy.base_url.rsplit(":", 1)[1]))
        statuses = []
        for project in ("app", "missing", "app"):
            connection.request("GET", f"/0/{project}/")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            assert connection.sock is not None, "the proxy closed the connection"
        connection.close()
    assert statuses == [200, 404, 200]
