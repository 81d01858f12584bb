"""Which Debian suite carries a Python version, and standalone CPython tarballs for versions none carries.

python_runtime(version, arch) combines both for the lock: the suite, the Debian packages to add to the OS
closure, and the tarball when there is one.

The provider is a JSON manifest named by env COGBUILD_PYTHON_PROVIDER (a URL or a file path):

    {"url_template": "https://host/cpython-{version}-{machine}-unknown-linux-gnu.tar.gz",   # optional
     "pythons": [{"version": "3.12.7", "arch": "amd64", "sha256": "…", "size": 123,
                  "url": "…"}]}                    # url optional when url_template is given

Placeholders: {version}, {arch} (amd64/arm64) and {machine} (x86_64/aarch64). Relative URLs are
resolved against the manifest's URL. Append `#sha256=<hex>` to the location to pin the manifest itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
from packaging.version import InvalidVersion, Version

from ..artifacts import Artifact
from ..errors import CogbuildError

PROVIDER_ENV = "COGBUILD_PYTHON_PROVIDER"

# Debian's default python3 per release; the image's Python comes from that release's debs.
DEBIAN_PYTHONS = {"3.11": "bookworm", "3.13": "trixie", "3.14": "forky"}

# The OS layer under a standalone CPython: the current stable release.
STANDALONE_BASE_SUITE = "trixie"

_MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}
_VERSION = re.compile(r"^3\.\d+(\.\d+)?$")


class UnsupportedPython(CogbuildError):
    """A python_version that neither a Debian suite nor a configured provider can supply."""


@dataclass(frozen=True)
class PythonRuntime:
    """Where an image's interpreter comes from, for one python_version and architecture."""

    suite: str
    debian_packages: tuple[str, ...]  # for the OS closure: Debian's interpreter, or what a tarball needs
    tarball: Artifact | None  # a standalone CPython when Debian has none for this version


# Standalone CPython builds link only glibc's libraries dynamically; libc6 brings libgcc-s1 along.
STANDALONE_RUNTIME_DEBS = ("libc6",)


def python_runtime(version: str, arch: str, *, provider: str | None = None) -> PythonRuntime:
    """Debian's python3.X where a suite carries it, else the provider's tarball on the standalone base."""
    if not uses_standalone_python(version):
        return PythonRuntime(suite_for_python(version), (debian_python_package(version),), None)
    tarball = standalone_python(version, arch, provider=provider)
    return PythonRuntime(STANDALONE_BASE_SUITE, STANDALONE_RUNTIME_DEBS, tarball)


def suite_for_python(version: str, *, provider: str | None = None) -> str:
    """The Debian release for `version` ("3.11" or "3.11.x"); with a provider, the standalone base."""
    minor = _minor(version)
    if minor in DEBIAN_PYTHONS:
        return DEBIAN_PYTHONS[minor]
    if _provider_location(provider):
        return STANDALONE_BASE_SUITE
    raise UnsupportedPython(f"Python {version} is not supported; {_supported()}.")


def uses_standalone_python(version: str) -> bool:
    """True when `version` has no Debian suite, so the image's Python comes from the provider."""
    return _minor(version) not in DEBIAN_PYTHONS


def debian_python_package(version: str) -> str:
    """The Debian package of the interpreter for `version`, e.g. "python3.11"."""
    minor = _minor(version)
    if minor not in DEBIAN_PYTHONS:
        raise UnsupportedPython(f"Python {version} has no Debian package; {_supported()}.")
    return f"python{minor}"


def standalone_python(
    version: str, arch: str, *, provider: str | None = None, verify: bool = False
) -> Artifact:
    """The provider's tarball for `version` on `arch`: exact "3.12.7", or the newest "3.12.x" for "3.12".

    With verify=True the tarball is downloaded and its size and sha256 checked against the manifest.
    """
    location = _provider_location(provider)
    if not location:
        raise UnsupportedPython(f"Python {version} needs a standalone CPython provider; {_supported()}.")
    _minor(version)
    manifest, base_url = _load_manifest(location)
    entry = _pick(manifest, version, arch, location)
    url = _entry_url(entry, manifest, arch, base_url, location)
    artifact = Artifact(
        kind="python-tarball",
        name="cpython",
        version=entry["version"],
        filename=url.rsplit("/", 1)[-1],
        url=url,
        sha256=entry["sha256"].lower(),
        size=int(entry["size"]),
        required_by=("python_version",),
    )
    if verify:
        _verify_download(artifact)
    return artifact


def _supported() -> str:
    listed = ", ".join(f"{minor} ({suite})" for minor, suite in DEBIAN_PYTHONS.items())
    return f"supported are {listed}, or set {PROVIDER_ENV} to a standalone CPython manifest"


def _minor(version: str) -> str:
    if not _VERSION.match(str(version).strip()):
        raise UnsupportedPython(f"'{version}' is not a Python version like 3.11 or 3.11.4; {_supported()}.")
    return ".".join(str(version).strip().split(".")[:2])


def _provider_location(provider: str | None) -> str:
    return (provider if provider is not None else os.environ.get(PROVIDER_ENV, "")).strip()


def _load_manifest(location: str) -> tuple[dict, str | None]:
    """The manifest as a dict and, when it came from a URL, that URL (for relative tarball URLs).

    A location ending in `#sha256=<hex>` pins the manifest's own bytes, so a plain-HTTP host cannot
    swap the hashes it lists.
    """
    location, _, fragment = location.partition("#")
    raw, base_url = _read_manifest(location)
    if fragment:
        pinned = fragment.removeprefix("sha256=").lower()
        if not fragment.startswith("sha256=") or not re.fullmatch(r"[0-9a-f]{64}", pinned):
            raise CogbuildError(f"The Python provider pin '#{fragment}' is not '#sha256=' and 64 hex digits.")
        if hashlib.sha256(raw).hexdigest() != pinned:
            raise CogbuildError(f"The Python provider manifest {location} does not match its pinned sha256.")
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CogbuildError(f"The Python provider manifest {location} is not valid JSON: {exc}.") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("pythons"), list):
        raise CogbuildError(f"The Python provider manifest {location} has no 'pythons' list.")
    return manifest, base_url


def _read_manifest(location: str) -> tuple[bytes, str | None]:
    if location.startswith(("http://", "https://")):
        try:
            response = httpx.get(location, timeout=60.0, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise CogbuildError(f"Could not fetch the Python provider manifest {location}: {exc}.") from None
        if response.status_code != 200:
            status = response.status_code
            raise CogbuildError(f"Could not fetch the Python provider manifest {location}: HTTP {status}.")
        raw, base_url = response.content, str(response.url)
    else:
        try:
            raw, base_url = Path(location).read_bytes(), None
        except OSError as exc:
            raise CogbuildError(f"Could not read the Python provider manifest {location}: {exc.strerror}.") from None
    return raw, base_url


def _pick(manifest: dict, version: str, arch: str, location: str) -> dict:
    wanted = version.strip()
    matches = []
    for position, entry in enumerate(manifest["pythons"]):
        _check_entry(entry, position, location)
        if entry["arch"] == arch and (entry["version"] == wanted or entry["version"].startswith(wanted + ".")):
            matches.append(entry)
    if not matches:
        offered = sorted({e["version"] for e in manifest["pythons"] if e["arch"] == arch}, key=_sort_key)
        listed = ", ".join(offered) or "none"
        raise UnsupportedPython(f"The Python provider {location} has no Python {wanted} for {arch} (it has: {listed}).")
    return max(matches, key=lambda e: _sort_key(e["version"]))


def _check_entry(entry: object, position: int, location: str) -> None:
    where = f"pythons[{position}] of the Python provider manifest {location}"
    if not isinstance(entry, dict):
        raise CogbuildError(f"{where} is not an object.")
    for key, kind in (("version", str), ("arch", str), ("sha256", str), ("size", int)):
        if not isinstance(entry.get(key), kind):
            raise CogbuildError(f"{where} needs '{key}' ({kind.__name__}).")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", entry["sha256"]):
        raise CogbuildError(f"{where} has a 'sha256' that is not 64 hex digits.")
    _sort_key(entry["version"], where)


def _sort_key(version: str, where: str = "the Python provider manifest") -> Version:
    try:
        return Version(version)
    except InvalidVersion:
        raise CogbuildError(f"{where} has an invalid version '{version}'.") from None


def _entry_url(entry: dict, manifest: dict, arch: str, base_url: str | None, location: str) -> str:
    url = entry.get("url")
    if url is None:
        template = manifest.get("url_template")
        if not isinstance(template, str):
            raise CogbuildError(
                f"Python {entry['version']} in {location} has no 'url' and the manifest no 'url_template'."
            )
        url = template.format(version=entry["version"], arch=arch, machine=_MACHINES.get(arch, arch))
    if base_url:
        url = urljoin(base_url, url)
    if not url.startswith(("http://", "https://")):
        raise CogbuildError(f"Python {entry['version']} in {location} has URL '{url}', which is not http(s).")
    return url


def _verify_download(artifact: Artifact) -> None:
    digest, size = hashlib.sha256(), 0
    try:
        with httpx.stream("GET", artifact.url, timeout=60.0, follow_redirects=True) as response:
            if response.status_code != 200:
                raise CogbuildError(f"Could not fetch {artifact.url}: HTTP {response.status_code}.")
            for chunk in response.iter_bytes():
                size += len(chunk)
                digest.update(chunk)
    except httpx.HTTPError as exc:
        raise CogbuildError(f"Could not fetch {artifact.url}: {exc}.") from None
    if size != artifact.size or digest.hexdigest() != artifact.sha256:
        raise CogbuildError(f"{artifact.url} does not match the size and sha256 its provider manifest lists.")
