"""What cogbuild adds to every image besides the model's own inputs: part of what a lock is made from.

A change here (another base package, a new runtime lockfile) makes existing locks stale, since their
`inputs` digest covers it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from . import lockfiles
from .config import CogConfig
from .errors import UsageError

# Besides the interpreter: dpkg's base files (os-release), netbase (/etc/services, /etc/protocols), time
# zones, CA certificates, a POSIX shell for subprocess users, bash (models written for Cog's Ubuntu images
# call it from setup() and predict()), and libstdc++, which manylinux wheels (numpy, torch, …) may assume
# the system provides.
BASE_PACKAGES = ("base-files", "netbase", "tzdata", "ca-certificates", "dash", "bash", "libstdc++6")
DEBIAN_ARCH = {"linux/amd64": "amd64", "linux/arm64": "arm64"}
WHEEL_ARCH = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
# Satisfied but never installed: they only serve maintainer scripts, which an image build never runs
# (debconf for questions, dpkg for dash's diversions, awk for base-files' postinst).
NOT_INSTALLED = ("debconf", "debconf-2.0", "dpkg", "awk")
# What builds an sdist's wheel inside the image (`pip wheel`, which fetches the sdist's build requirements):
# pinned here, locked by sha256 for each platform that has an sdist. pip 25 needs Python 3.9 or newer.
WHEEL_BUILDER = ("pip==25.3; python_version >= '3.9'", "pip==24.3.1; python_version < '3.9'")


def os_packages(python_version: str) -> list[str]:
    return [f"python{python_version}", *BASE_PACKAGES]


def runtime_lockfile(python_version: str) -> Path:
    # Beside the package's own module, not through importlib.resources: that costs every command ~15 ms.
    path = Path(lockfiles.__file__).parent / f"runtime-py{python_version}.txt"
    if not path.is_file():
        raise UsageError(f"cogbuild has no runtime lockfile for Python {python_version}")
    return path


def lock_inputs_digest(config: CogConfig) -> str:
    """The digest a lock records: cog.yaml, the requirements file, and this policy."""
    h = hashlib.sha256(config.inputs_digest().encode())
    h.update("\0".join(os_packages(config.python_version) + list(NOT_INSTALLED)).encode())
    try:
        h.update(runtime_lockfile(config.python_version).read_bytes())
    except UsageError:
        pass  # an unsupported version fails when locking, with its own message
    return "sha256:" + h.hexdigest()
