"""Source distributions: recognising them, and using them without building when allowed.

An sdist can join a lock without being built only when its dependencies are known statically: PEP 643
(Metadata-Version 2.2 or later) lets PKG-INFO declare that Requires-Dist, Requires-Python and
Provides-Extra are not Dynamic. For such an sdist a stand-in wheel carrying only that metadata lets
pip resolve through it; the lock then records the sdist itself, which the build has to turn into a wheel.
"""

from __future__ import annotations

import hashlib
import re
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import InvalidSdistFilename, canonicalize_name, parse_sdist_filename
from packaging.version import Version

from ..errors import CogbuildError
from ..requirement_paths import SDIST_SUFFIXES
from .index import IndexClient, IndexFile

_RESOLUTION_FIELDS = {"requires-dist", "requires-python", "provides-extra"}


def sdist_version(name: str, filename: str) -> Version | None:
    """The version of `name` an sdist file name carries, or None when it is not an sdist of `name`."""
    if not filename.endswith(SDIST_SUFFIXES):
        return None
    try:
        sdist_name, version = parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return None
    return version if sdist_name == canonicalize_name(name) else None


def newest_sdist(requirement: Requirement, files: list[IndexFile]) -> IndexFile | None:
    """The newest non-yanked sdist of the requirement's project that its specifier allows."""
    candidates = [(version, file) for file in files if not file.yanked
                  and (version := sdist_version(requirement.name, file.filename)) is not None
                  and requirement.specifier.contains(version, prereleases=True)]
    return max(candidates, key=lambda pair: pair[0])[1] if candidates else None


def fetch_sdist(client: IndexClient, file: IndexFile, directory: Path) -> tuple[Path, str, int]:
    """Download the sdist (checked against the index's sha256): (path, sha256, size)."""
    data = client.read_bytes(file.url)
    sha256 = hashlib.sha256(data).hexdigest()
    if file.sha256 and sha256 != file.sha256:
        raise CogbuildError(f"{file.url} does not match the sha256 its index lists.")
    path = directory / file.filename
    path.write_bytes(data)
    return path, sha256, len(data)


def static_metadata(path: Path) -> str | None:
    """PKG-INFO text when it declares its dependencies statically (PEP 643), else None."""
    text = _read_pkg_info(path)
    if text is None:
        return None
    headers = HeaderParser().parsestr(text)
    version = headers.get("Metadata-Version", "1.0")
    if tuple(int(part) for part in re.findall(r"\d+", version)[:2]) < (2, 2):
        return None
    dynamic = {field.strip().lower() for field in headers.get_all("Dynamic") or []}
    return None if dynamic & _RESOLUTION_FIELDS else text


def static_build_requires(path: Path) -> list[str]:
    """The build requirements pyproject.toml names ([build-system] requires, or PEP 517's default), read
    without running the backend; any it would add from get_requires_for_build_wheel are not known."""
    from .backend import build_system  # local: backend loads pyproject_hooks, needed only for this

    return build_system(_read_top_level(path, "pyproject.toml"))[0]


def _read_pkg_info(path: Path) -> str | None:
    return _read_top_level(path, "PKG-INFO")


def _read_top_level(path: Path, filename: str) -> str | None:
    """The text of `filename` in the sdist's top-level directory, if it has one."""
    top_level = re.compile(rf"^[^/]+/{re.escape(filename)}$")
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if top_level.match(n)), None)
            return archive.read(name).decode() if name else None
    with tarfile.open(path) as archive:
        member = next((m for m in archive.getmembers() if top_level.match(m.name) and m.isfile()), None)
        handle = archive.extractfile(member) if member else None
        return handle.read().decode() if handle else None


def standin_path(directory: Path, name: str, version: str) -> Path:
    return directory / f"{canonicalize_name(name).replace('-', '_')}-{version}-py3-none-any.whl"


def write_standin_wheel(directory: Path, name: str, version: str, metadata: str) -> Path:
    """A wheel holding only the sdist's metadata, so pip can resolve through it without building."""
    path = standin_path(directory, name, version)
    distinfo = f"{canonicalize_name(name).replace('-', '_')}-{version}.dist-info"
    wheel = "Wheel-Version: 1.0\nGenerator: cogbuild stand-in\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{distinfo}/METADATA", metadata)
        archive.writestr(f"{distinfo}/WHEEL", wheel)
        archive.writestr(f"{distinfo}/RECORD", "")
    return path
