"""Python version -> Debian suite or python-build-standalone: the shipped data, a provider manifest served
from loopback, and the switch between Debian and standalone."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from functools import partial
from importlib import resources
from pathlib import Path

import pytest
from packaging.version import Version

from cogbuild import interpreter
from cogbuild.debian import debian_python_package, debian_suite, upstream_version
from cogbuild.errors import CogbuildError, UsageError
from cogbuild.interpreter import STANDALONE_BASE_SUITE, choose_interpreter
from cogbuild.lock import Lock, dumps, loads, locked
from cogbuild.standalone import UnsupportedPython, nearest_versions, standalone_python

UPSTREAM = "https://github.com/astral-sh/python-build-standalone/releases/download/"


def make_tarball(path: Path, version: str) -> dict:
    """A small CPython-shaped tarball; returns its manifest fields."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = f"#!/bin/sh\necho Python {version}\n".encode()
        info = tarfile.TarInfo("python/bin/python3")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return {"sha256": hashlib.sha256(buffer.getvalue()).hexdigest(), "size": len(buffer.getvalue())}


@pytest.fixture
def provider(tmp_path: Path, serve) -> dict:
    """A manifest on loopback: 3.12.3 and 3.12.7 for amd64 via the URL template, 3.12.7 arm64 by explicit URL."""
    site = tmp_path / "site"
    entries = []
    for version in ("3.12.3", "3.12.7"):
        fields = make_tarball(site / "dist" / f"cpython-{version}-x86_64.tar.gz", version)
        entries.append({"version": version, "arch": "amd64", **fields})
    arm = make_tarball(site / "arm" / "cpython-3.12.7-aarch64.tar.gz", "3.12.7")
    entries.append({"version": "3.12.7", "arch": "arm64", "url": "arm/cpython-3.12.7-aarch64.tar.gz", **arm})
    manifest = {"url_template": "dist/cpython-{version}-{machine}.tar.gz", "pythons": entries}
    (site / "pythons.json").write_text(json.dumps(manifest))
    url = serve(site)
    return {"site": site, "url": url, "manifest": f"{url}/pythons.json", "entries": entries}


def shipped_builds(machine: str) -> list[dict]:
    data = json.loads(resources.files("cogbuild").joinpath("data/python-build-standalone.json").read_text())
    return [b for b in data["builds"] if b["arch"] == machine]


def test_debian_suites_and_packages_for_python_versions():
    assert debian_suite("3.11") == "bookworm"
    assert debian_suite("3.11.4") == "bookworm"
    assert debian_suite("3.13") == "trixie"
    assert debian_suite("3.14") == "forky"
    assert debian_suite("3.12") is None
    assert debian_python_package("3.13.1") == "python3.13"
    assert upstream_version("3.11.2-6+deb12u6") == "3.11.2"
    assert upstream_version("3.14.0~rc2-1") == "3.14.0"


@pytest.mark.parametrize("minor", ["3.8", "3.10", "3.12", "3.14"])
@pytest.mark.parametrize(("arch", "machine"), [("amd64", "x86_64"), ("arm64", "aarch64")])
def test_a_lock_names_the_upstream_build_from_the_shipped_data(minor, arch, machine, cache_root):
    """No network: the shipped data alone gives each interpreter's URL and sha256, for both architectures."""
    chosen = choose_interpreter(minor, "standalone", cache_root=cache_root)
    tarball = chosen.tarball(minor, arch)
    builds = [b for b in shipped_builds(machine) if b["version"].startswith(minor + ".")]
    newest = max(builds, key=lambda b: Version(b["version"]))
    assert (tarball.version, tarball.url, tarball.sha256) == (newest["version"], newest["url"], newest["sha256"])
    assert tarball.url.startswith(UPSTREAM) and f"cpython-{newest['version']}%2B" in tarball.url
    assert tarball.filename.startswith(f"cpython-{newest['version']}+")
    assert f"-{machine}-unknown-linux-gnu-install_only" in tarball.filename
    platform = f"linux/{arch}"
    lock = Lock("sha256:" + "0" * 64, minor, chosen.suite, [platform], ["cpu"],
                locked(platform, "interpreter", [tarball], ["cpu"]), "standalone", "standalone")
    text = dumps(lock)
    assert f'url = "{newest["url"]}"' in text and f'sha256 = "{newest["sha256"]}"' in text
    again = loads(text)
    assert again.select(platform, "cpu", "interpreter") == [tarball]
    assert (again.python_provider, again.python_from) == ("standalone", "standalone")
    assert again.interpreter(platform) == f"{newest['version']} (standalone)"


def test_an_exact_patch_locks_exactly_that_build():
    tarball = standalone_python("3.12.4", "arm64")
    expected = next(b for b in shipped_builds("aarch64") if b["version"] == "3.12.4")
    assert (tarball.version, tarball.url, tarball.sha256) == ("3.12.4", expected["url"], expected["sha256"])
    assert tarball.size == 0  # the data lists no sizes: the download is checked by sha256


@pytest.mark.parametrize(("wanted", "arch", "nearest"), [
    ("3.12.99", "amd64", "3.12.12, 3.12.13, 3.12.14"),
    ("3.7", "amd64", "3.8.20, 3.9.25, 3.10.21"),
    ("3.8.12", "arm64", "3.8.13, 3.8.14, 3.8.15"),
    ("3.15", "arm64", "3.12.14, 3.13.15, 3.14.7"),
])  # fmt: skip
def test_a_version_without_a_build_is_one_sentence_naming_the_nearest(wanted, arch, nearest):
    with pytest.raises(UnsupportedPython) as error:
        standalone_python(wanted, arch)
    assert str(error.value) == (f"python-build-standalone has no CPython {wanted} for {arch}; "
                                f"the nearest it has: {nearest}.")


def test_nearest_versions_prefers_the_same_minor():
    assert nearest_versions("3.10.1", ["3.9.20", "3.10.2", "3.10.9", "3.11.0"]) == ["3.10.2", "3.10.9", "3.11.0"]
    assert nearest_versions("3.12", ["3.11.1", "3.11.9", "3.13.0"], count=2) == ["3.11.9", "3.13.0"]


def test_the_switch_decides_who_serves_the_interpreter(monkeypatch, cache_root):
    asked_under = []
    monkeypatch.setattr(interpreter, "debian_patch",
                        lambda suite, request, arch, root: asked_under.append(root) or "3.11.2")
    choose = partial(choose_interpreter, cache_root=cache_root)
    assert choose("3.11").provider == "debian"
    assert choose("3.11").suite == "bookworm"
    assert choose("3.11.2").provider == "debian"  # the exact patch Debian ships
    exact = choose("3.11.4")  # Debian has 3.11.2: exactly 3.11.4 comes from a standalone build
    assert (exact.provider, exact.suite) == ("standalone", STANDALONE_BASE_SUITE)
    assert "libc6" in exact.debian_packages
    assert choose("3.12").provider == "standalone"
    assert choose("3.13", "standalone").provider == "standalone"
    assert choose("3.11", "debian").debian_packages == ("python3.11",)
    with pytest.raises(UnsupportedPython) as error:
        choose("3.11.4", "debian")
    assert str(error.value) == ("Debian bookworm carries Python 3.11.2, not 3.11.4; lock with --python-from auto "
                                "or standalone for exactly 3.11.4.")
    with pytest.raises(UnsupportedPython, match=r"^Debian has no Python 3\.12 \(it carries 3\.11 \(bookworm\), "):
        choose("3.12", "debian")
    with pytest.raises(UsageError, match="--python-from must be one of auto, debian, standalone"):
        choose("3.12", "conda")
    assert set(asked_under) == {cache_root}  # Debian's index is read under the caller's cache root


def test_a_configured_provider_replaces_the_shipped_data(provider):
    tarball = standalone_python("3.12", "amd64", provider=provider["manifest"], verify=True)
    newest = provider["entries"][1]
    assert tarball.kind == "python-tarball" and tarball.name == "cpython"
    assert tarball.version == "3.12.7"
    assert tarball.url == f"{provider['url']}/dist/cpython-3.12.7-x86_64.tar.gz"
    assert tarball.filename == "cpython-3.12.7-x86_64.tar.gz"
    assert (tarball.sha256, tarball.size) == (newest["sha256"], newest["size"])
    with pytest.raises(UnsupportedPython, match=r"the nearest it has: 3\.12\.3, 3\.12\.7\.$"):
        standalone_python("3.12.4", "amd64", provider=provider["manifest"])  # the shipped data has it only


def test_exact_versions_explicit_urls_and_arm64(provider):
    exact = standalone_python("3.12.3", "amd64", provider=provider["manifest"], verify=True)
    assert exact.version == "3.12.3" and exact.sha256 == provider["entries"][0]["sha256"]
    arm = standalone_python("3.12", "arm64", provider=provider["manifest"], verify=True)
    assert arm.url == f"{provider['url']}/arm/cpython-3.12.7-aarch64.tar.gz"
    with pytest.raises(UnsupportedPython, match=r"has no CPython 3\.12\.3 for arm64; the nearest it has: 3\.12\.7\.$"):
        standalone_python("3.12.3", "arm64", provider=provider["manifest"])
    with pytest.raises(UnsupportedPython, match=r"has no CPython 3\.10 for amd64; the nearest it has: 3\.12\.7\.$"):
        standalone_python("3.10", "amd64", provider=provider["manifest"])


def test_verify_catches_a_tarball_that_changed(provider):
    (provider["site"] / "dist/cpython-3.12.7-x86_64.tar.gz").write_bytes(b"not the pinned tarball")
    with pytest.raises(CogbuildError, match="does not match the size and sha256 its provider lists"):
        standalone_python("3.12", "amd64", provider=provider["manifest"], verify=True)


def test_manifest_from_a_file_path(tmp_path):
    manifest = tmp_path / "pythons.json"
    entry = {"version": "3.10.15", "arch": "amd64", "url": "https://example.invalid/py.tgz", "sha256": "a" * 64,
             "size": 5}  # fmt: skip
    manifest.write_text(json.dumps({"pythons": [entry]}))
    assert standalone_python("3.10", "amd64", provider=str(manifest)).url == "https://example.invalid/py.tgz"
    entry["url"] = "py.tgz"
    manifest.write_text(json.dumps({"pythons": [entry]}))
    with pytest.raises(CogbuildError, match=r"has URL 'py\.tgz', which is not http"):
        standalone_python("3.10", "amd64", provider=str(manifest))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"versions": []}', "has no 'pythons' list"),
        ('{"pythons": [{"version": "3.12.1", "arch": "amd64", "sha256": "ab", "size": 1}]}', "not 64 hex digits"),
        ('{"pythons": [{"version": "3.12.1", "arch": "amd64", "size": 1}]}', r"pythons\[0\] .* needs 'sha256'"),
        ('{"pythons": [{"version": "3.12.1", "arch": "amd64", "sha256": "' + "a" * 64 + '", "size": 1}]}',
         "has no 'url' and the manifest no 'url_template'"),
    ],
)  # fmt: skip
def test_bad_manifests_are_one_clear_sentence(tmp_path, content, message):
    manifest = tmp_path / "pythons.json"
    manifest.write_text(content)
    with pytest.raises(CogbuildError, match=message):
        standalone_python("3.12", "amd64", provider=str(manifest))
    with pytest.raises(CogbuildError, match="Could not read the Python provider manifest"):
        standalone_python("3.12", "amd64", provider=str(tmp_path / "missing.json"))


def test_a_pinned_manifest_must_match_its_hash(provider):
    digest = hashlib.sha256((provider["site"] / "pythons.json").read_bytes()).hexdigest()
    pinned = standalone_python("3.12", "amd64", provider=f"{provider['manifest']}#sha256={digest}")
    assert pinned.url == f"{provider['url']}/dist/cpython-3.12.7-x86_64.tar.gz"  # relative to the manifest URL
    with pytest.raises(CogbuildError, match="does not match its pinned sha256"):
        standalone_python("3.12", "amd64", provider=f"{provider['manifest']}#sha256={'0' * 64}")
    with pytest.raises(CogbuildError, match="is not '#sha256=' and 64 hex digits"):
        standalone_python("3.12", "amd64", provider=f"{provider['manifest']}#md5=abc")


def test_regen_keeps_linux_glibc_default_builds_from_uv_metadata(tmp_path):
    """scripts/regen-python-builds reads both spellings of uv's architecture and keeps what an image can run."""
    def entry(version: str, arch, *, os_name="linux", libc="gnu", prerelease="", variant=None, flavor="install_only"):
        major, minor, patch = version.split(".")
        machine = arch if isinstance(arch, str) else arch["family"]
        url = (f"{UPSTREAM}20250101/cpython-{version}%2B20250101-{machine}-unknown-linux-{libc}-{flavor}.tar.gz")
        return {"name": "cpython", "arch": arch, "os": os_name, "libc": libc, "major": int(major),
                "minor": int(minor), "patch": int(patch), "prerelease": prerelease, "variant": variant,
                "url": url, "sha256": hashlib.sha256(url.encode()).hexdigest()}

    source = {
        "a": entry("3.12.4", "x86_64"),
        "b": entry("3.12.4", {"family": "aarch64", "variant": None}, flavor="install_only_stripped"),
        "c": entry("3.12.4", {"family": "x86_64", "variant": "v3"}),
        "d": entry("3.13.0", "x86_64", prerelease="rc2"),
        "e": entry("3.13.1", "x86_64", variant="freethreaded"),
        "f": entry("3.13.1", "x86_64", libc="musl"),
        "g": entry("3.7.9", "x86_64"),
        "h": entry("3.8.20", "x86_64", os_name="darwin"),
    }
    (tmp_path / "uv.json").write_text(json.dumps(source))
    out = tmp_path / "builds.json"
    script = Path(__file__).resolve().parents[2] / "scripts" / "regen-python-builds"
    done = subprocess.run([sys.executable, str(script), "--source", str(tmp_path / "uv.json"), "--output", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["count"] == 2
    assert [(b["version"], b["arch"], b["flavor"], b["build"]) for b in data["builds"]] == [
        ("3.12.4", "aarch64", "install_only_stripped", "20250101"), ("3.12.4", "x86_64", "install_only", "20250101")]
    assert data["builds"][1]["sha256"] == source["a"]["sha256"] and data["builds"][1]["url"] == source["a"]["url"]
