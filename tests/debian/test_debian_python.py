"""Python version → Debian suite, and the standalone CPython provider served from loopback."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from cogbuild.debian import UnsupportedPython, python_runtime, standalone_python, suite_for_python
from cogbuild.debian.python import PROVIDER_ENV, STANDALONE_BASE_SUITE, debian_python_package
from cogbuild.errors import CogbuildError


@pytest.fixture(autouse=True)
def no_provider_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PROVIDER_ENV, raising=False)


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


def test_debian_suites_for_python_versions():
    assert suite_for_python("3.11") == "bookworm"
    assert suite_for_python("3.11.4") == "bookworm"
    assert suite_for_python("3.13") == "trixie"
    assert suite_for_python("3.14") == "forky"
    assert debian_python_package("3.13.1") == "python3.13"


def test_unsupported_python_lists_what_is_supported():
    with pytest.raises(UnsupportedPython) as error:
        suite_for_python("3.12")
    message = str(error.value)
    supported = "supported are 3.11 (bookworm), 3.13 (trixie), 3.14 (forky)"
    assert message.startswith(f"Python 3.12 is not supported; {supported}")
    assert PROVIDER_ENV in message and message.endswith("manifest.")
    assert isinstance(error.value, CogbuildError)
    with pytest.raises(UnsupportedPython, match=r"'3' is not a Python version like 3\.11"):
        suite_for_python("3")
    with pytest.raises(UnsupportedPython, match="needs a standalone CPython provider"):
        standalone_python("3.12", "amd64")


def test_a_configured_provider_makes_other_versions_supported(provider, monkeypatch):
    monkeypatch.setenv(PROVIDER_ENV, provider["manifest"])
    assert suite_for_python("3.12") == STANDALONE_BASE_SUITE
    assert suite_for_python("3.11") == "bookworm"  # Debian's own Python still wins where there is one
    tarball = standalone_python("3.12", "amd64", verify=True)
    newest = provider["entries"][1]
    assert tarball.kind == "python-tarball" and tarball.name == "cpython"
    assert tarball.version == "3.12.7"
    assert tarball.url == f"{provider['url']}/dist/cpython-3.12.7-x86_64.tar.gz"
    assert tarball.filename == "cpython-3.12.7-x86_64.tar.gz"
    assert (tarball.sha256, tarball.size) == (newest["sha256"], newest["size"])


def test_exact_versions_explicit_urls_and_arm64(provider):
    exact = standalone_python("3.12.3", "amd64", provider=provider["manifest"], verify=True)
    assert exact.version == "3.12.3" and exact.sha256 == provider["entries"][0]["sha256"]
    arm = standalone_python("3.12", "arm64", provider=provider["manifest"], verify=True)
    assert arm.url == f"{provider['url']}/arm/cpython-3.12.7-aarch64.tar.gz"
    with pytest.raises(UnsupportedPython, match=r"has no Python 3\.12\.3 for arm64 \(it has: 3\.12\.7\)\."):
        standalone_python("3.12.3", "arm64", provider=provider["manifest"])
    with pytest.raises(UnsupportedPython, match=r"has no Python 3\.10 for amd64 \(it has: 3\.12\.3, 3\.12\.7\)\."):
        standalone_python("3.10", "amd64", provider=provider["manifest"])


def test_verify_catches_a_tarball_that_changed(provider):
    (provider["site"] / "dist/cpython-3.12.7-x86_64.tar.gz").write_bytes(b"not the pinned tarball")
    with pytest.raises(CogbuildError, match="does not match the size and sha256 its provider manifest lists"):
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


def test_python_runtime_says_where_the_interpreter_comes_from(provider):
    debian = python_runtime("3.11", "arm64")
    assert (debian.suite, debian.debian_packages, debian.tarball) == ("bookworm", ("python3.11",), None)
    standalone = python_runtime("3.12", "arm64", provider=provider["manifest"])
    assert standalone.suite == STANDALONE_BASE_SUITE
    assert "libc6" in standalone.debian_packages
    assert standalone.tarball.url.endswith("/arm/cpython-3.12.7-aarch64.tar.gz")
    with pytest.raises(UnsupportedPython, match="needs a standalone CPython provider"):
        python_runtime("3.12", "arm64")


def test_a_pinned_manifest_must_match_its_hash(provider):
    digest = hashlib.sha256((provider["site"] / "pythons.json").read_bytes()).hexdigest()
    pinned = standalone_python("3.12", "amd64", provider=f"{provider['manifest']}#sha256={digest}")
    assert pinned.url == f"{provider['url']}/dist/cpython-3.12.7-x86_64.tar.gz"  # relative to the manifest URL
    with pytest.raises(CogbuildError, match="does not match its pinned sha256"):
        standalone_python("3.12", "amd64", provider=f"{provider['manifest']}#sha256={'0' * 64}")
    with pytest.raises(CogbuildError, match="is not '#sha256=' and 64 hex digits"):
        standalone_python("3.12", "amd64", provider=f"{provider['manifest']}#md5=abc")
