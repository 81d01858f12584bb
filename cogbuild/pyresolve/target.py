"""The image's Python platform: which wheels fit it and how environment markers evaluate on it.

Everything here describes the IMAGE (Debian's CPython on linux/<arch> with Debian's glibc), never the
host that runs `cogbuild lock`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from packaging.tags import Tag

ARCHES = ("x86_64", "aarch64")
# The legacy manylinux names are aliases of glibc levels (PEP 600); both spellings exist on PyPI.
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
# The oldest glibc each architecture had manylinux wheels for.
_OLDEST_GLIBC = {"x86_64": (2, 5), "aarch64": (2, 17)}
_LEGACY_ARCHES = {"x86_64": ("manylinux2014", "manylinux2010", "manylinux1"), "aarch64": ("manylinux2014",)}


@dataclass(frozen=True)
class Target:
    """A CPython version on linux/<arch> with a glibc version, e.g. Target("3.11", "x86_64", "2.36")."""

    python_version: str = "3.11"
    arch: str = "x86_64"
    glibc: str = "2.36"
    # The interpreter's patch release, for the rare python_full_version marker; default X.Y.0.
    python_full_version: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"3\.\d{1,2}", self.python_version):
            raise UsageError(f"Python version {self.python_version!r} is not of the form 3.X.")
        if self.arch not in ARCHES:
            raise UsageError(f"Architecture {self.arch!r} is not one of {', '.join(ARCHES)}.")
        if not re.fullmatch(r"2\.\d{1,2}", self.glibc):
            raise UsageError(f"glibc version {self.glibc!r} is not of the form 2.X.")
        oldest = _OLDEST_GLIBC[self.arch]
        if int(self.glibc.split(".")[1]) < oldest[1]:
            raise UsageError(f"glibc {self.glibc} is older than any manylinux wheel for {self.arch} "
                             f"(manylinux starts at glibc {oldest[0]}.{oldest[1]}).")

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.python_version.split(".")
        return int(major), int(minor)

    @property
    def abi(self) -> str:
        """The CPython ABI tag, e.g. cp311."""
        return "cp" + self.python_version.replace(".", "")

    def platforms(self) -> list[str]:
        """Platform tags the image accepts, most specific (newest glibc) first."""
        glibc_minor = int(self.glibc.split(".")[1])
        oldest_minor = _OLDEST_GLIBC[self.arch][1]
        platforms = []
        for minor in range(glibc_minor, oldest_minor - 1, -1):
            platforms.append(f"manylinux_2_{minor}_{self.arch}")
            legacy = _LEGACY_MANYLINUX.get((2, minor))
            if legacy and legacy in _LEGACY_ARCHES[self.arch]:
                platforms.append(f"{legacy}_{self.arch}")
        return platforms

    def tags(self) -> tuple[Tag, ...]:
        """Every wheel tag the image accepts, best first (packaging.tags order)."""
        return _tags(self)

    def tag_ranks(self) -> dict[Tag, int]:
        """Each tag of tags() by its place, 0 the best."""
        return _tag_ranks(self)

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values as they are inside the image."""
        full = self.python_full_version or f"{self.python_version}.0"
        return {
            "implementation_name": "cpython",
            "implementation_version": full,
            "os_name": "posix",
            "platform_machine": self.arch,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": full,
            "python_version": self.python_version,
            "sys_platform": "linux",
        }

    def describe(self) -> str:
        """How error messages name the target, e.g. 'CPython 3.11 on linux/x86_64 (manylinux_2_36)'."""
        return f"CPython {self.python_version} on linux/{self.arch} (manylinux_{self.glibc.replace('.', '_')})"


# A lock asks for them several times (the proxy, the pinning), and there are about a thousand.
@cache
def _tags(target: Target) -> tuple[Tag, ...]:
    from packaging.tags import compatible_tags, cpython_tags  # not needed to start uv (see resolve.py)

    platforms = target.platforms()
    return (*cpython_tags(target.version_tuple, abis=[target.abi], platforms=platforms),
            *compatible_tags(target.version_tuple, interpreter=target.abi, platforms=platforms))


@cache
def _tag_ranks(target: Target) -> dict[Tag, int]:
    return {tag: position for position, tag in enumerate(_tags(target))}
