"""Which Debian suite carries a Python version as its python3.X package."""

from __future__ import annotations

import re

# Debian's default python3 per release; the image's Python comes from that release's debs.
DEBIAN_PYTHONS = {"3.11": "bookworm", "3.13": "trixie", "3.14": "forky"}

_VERSION = re.compile(r"^3\.\d+(\.\d+)?$")


def minor_of(version: str) -> str:
    """"3.12.4" -> "3.12"; ValueError for anything that is not 3.X or 3.X.Y."""
    if not _VERSION.match(version.strip()):
        raise ValueError(f"'{version}' is not a Python version like 3.11 or 3.11.4")
    return ".".join(version.strip().split(".")[:2])


def debian_suite(version: str) -> str | None:
    """The Debian release whose python3.X is `version`'s minor, or None."""
    return DEBIAN_PYTHONS.get(minor_of(version))


def debian_python_package(version: str) -> str:
    """The Debian package of the interpreter for `version`, e.g. "python3.11"."""
    return f"python{minor_of(version)}"


def upstream_version(deb_version: str) -> str:
    """The CPython release a Debian package version carries: "3.11.2-6+deb12u6" -> "3.11.2"."""
    return re.split(r"[-~+]", deb_version.split(":")[-1], maxsplit=1)[0]
