"""Where an image's CPython comes from: Debian's python3.X package, or a standalone build on Debian's OS.

With the default switch ("auto"), Debian serves a version its releases carry (3.11 bookworm, 3.13 trixie,
3.14 forky) when cog.yaml names the minor ("3.13") or exactly the patch Debian ships; python-build-standalone
serves everything else ("3.12", "3.11.4", "3.8"), on trixie's OS packages. `cogbuild lock --python-from
debian|standalone` forces one; the lock records the switch, so re-locking and `lock --check` keep it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .artifacts import Artifact
from .debian import DEBIAN_PYTHONS, debian_python_package, debian_suite, resolve_closure, upstream_version
from .errors import UsageError
from .lock import PYTHON_FROM
from .policy import NOT_INSTALLED
from .standalone import UnsupportedPython, standalone_python


# The OS layer under a standalone CPython: the current stable release.
STANDALONE_BASE_SUITE = "trixie"
# Standalone builds link only glibc's libraries dynamically (libcrypt for the old _crypt module).
STANDALONE_RUNTIME_DEBS = ("libc6", "libcrypt1")


@dataclass(frozen=True)
class Interpreter:
    """Which provider serves a python_version, from which Debian suite, with which OS packages."""

    provider: str  # "debian" or "standalone"
    suite: str
    debian_packages: tuple[str, ...]  # Debian's interpreter, or what a standalone build needs

    def tarball(self, request: str, arch: str, manifest: str = "") -> Artifact | None:
        """The standalone CPython's tarball, from `manifest` (COGBUILD_PYTHON_PROVIDER) or the shipped data."""
        return standalone_python(request, arch, provider=manifest) if self.provider == "standalone" else None


def choose_interpreter(request: str, python_from: str = "auto", arch: str = "amd64", *,
                       cache_root: Path) -> Interpreter:
    """The provider for python_version `request` ("3.12" or "3.12.4") under the switch `python_from`; an exact
    patch asks Debian's index (kept under `cache_root`) which one it ships."""
    if python_from not in PYTHON_FROM:
        raise UsageError(f"--python-from must be one of {', '.join(PYTHON_FROM)}, not {python_from!r}")
    suite = debian_suite(request)
    if python_from == "standalone" or (python_from == "auto" and suite is None):
        return Interpreter("standalone", STANDALONE_BASE_SUITE, STANDALONE_RUNTIME_DEBS)
    if suite is None:
        carried = ", ".join(f"{minor} ({name})" for minor, name in DEBIAN_PYTHONS.items())
        raise UnsupportedPython(f"Debian has no Python {request} (it carries {carried}); lock with "
                                "--python-from auto or standalone.")
    debian = Interpreter("debian", suite, (debian_python_package(request),))
    if request.count(".") == 1:
        return debian
    shipped = debian_patch(suite, request, arch, cache_root)
    if shipped == request:
        return debian
    if python_from == "debian":
        raise UnsupportedPython(f"Debian {suite} carries Python {shipped}, not {request}; lock with "
                                f"--python-from auto or standalone for exactly {request}.")
    return Interpreter("standalone", STANDALONE_BASE_SUITE, STANDALONE_RUNTIME_DEBS)


def debian_patch(suite: str, request: str, arch: str, cache_root: Path) -> str:
    """The CPython release of the python3.X package that `suite` ships now, e.g. "3.11.2"."""
    package = debian_python_package(request)
    for deb in resolve_closure([package], suite=suite, arch=arch, exclude=NOT_INSTALLED, cache_root=cache_root):
        if deb.name == package:
            return upstream_version(deb.version)
    raise UnsupportedPython(f"Debian {suite} has no {package} for {arch}.")
