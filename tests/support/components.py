"""What a test needs from the machine: missing in CI is a failure, on a developer's machine a skip.

The benches under bench/ use these helpers too, where pytest need not be installed: there a missing
component stops the script with the reason.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def unavailable(message: str) -> None:
    """Something the test needs is missing: fail when CI is set, skip otherwise."""
    if "pytest" not in sys.modules:  # a bench script, not a test
        raise SystemExit(message)
    import pytest

    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require(*programs: str) -> str:
    """The programs must be on PATH; returns the path of the first."""
    paths = [shutil.which(p) for p in programs]
    missing = [p for p, path in zip(programs, paths, strict=False) if path is None]
    if missing:
        unavailable(f"{', '.join(missing)} not installed")
    return paths[0]  # type: ignore[return-value]


def podman_command() -> list[str]:
    """podman as this machine runs it (cgroupfs, runc, no default ulimits); fails in CI when missing."""
    require("podman", "runc")
    return _podman_on_this_host("podman")


def _podman_on_this_host(podman: str) -> list[str]:
    conf = Path(os.environ.get("TMPDIR", "/tmp")) / "cogbuild-e2e-containers.conf"
    # The engine settings reach `cogbuild predict/run`, which leave podman to choose: with crun installed
    # podman prefers it, and this host's crun refuses its hybrid cgroups.
    conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n')
    os.environ["CONTAINERS_CONF"] = str(conf)
    return [podman, "--cgroup-manager=cgroupfs", "--runtime", "runc"]


SIGSTORE_DISABLED = b"Debian-local change: sigstore disabled"
REPO = Path(__file__).resolve().parents[2]


def sigstore_skopeo() -> str:
    """A skopeo that signs and checks sigstore signatures: on PATH, else the one scripts/sigstore-tools made."""
    return _sigstore_capable("skopeo")


def sigstore_podman() -> list[str]:
    """A podman whose policy engine checks sigstore signatures, run as podman_command() runs podman."""
    require("runc")
    return _podman_on_this_host(_sigstore_capable("podman"))


def _sigstore_capable(program: str) -> str:
    """`program` on PATH unless built with sigstore disabled (Debian bookworm's are), else the trixie build.

    The trixie build is a wrapper script; the binary it runs is checked for the Debian patch too.
    """
    unpacked = REPO / ".venv" / "sigstore" / "root" / "usr" / "bin" / program
    for path, binary in ((shutil.which(program), shutil.which(program)),
                         (str(REPO / ".venv" / "sigstore" / "bin" / program), str(unpacked))):
        if path and binary and os.access(path, os.X_OK) and os.access(binary, os.X_OK) \
                and SIGSTORE_DISABLED not in Path(binary).read_bytes():
            return path
    unavailable(f"no {program} with sigstore support (Debian bookworm builds it with sigstore disabled); "
                "run scripts/sigstore-tools")
    raise AssertionError("unreachable")
