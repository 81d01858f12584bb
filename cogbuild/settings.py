"""Every environment variable cogbuild reads, in one table: `cogbuild --help` and docs/cli.md list them from
here (a test keeps the code, this table and the docs in step), and values that need parsing are parsed here,
so a bad one is a usage error naming the variable, not an internal error."""

from __future__ import annotations

import math
import os
from typing import Mapping

from .errors import UsageError

# name -> what it sets; the order is the order `--help` prints them in.
VARIABLES: dict[str, str] = {
    "COGBUILD_STORE": "the local image store (default ~/.local/share/cogbuild/store)",
    "COGBUILD_CACHE": "downloads, layers and unpacked images (default ~/.cache/cogbuild)",
    "COGBUILD_DEBUG": "1 shows tracebacks, like --debug",
    "COGBUILD_READY_TIMEOUT": "seconds to wait for a model's setup (default 300)",
    "COGBUILD_RUNTIME": "podman, docker, containerd, runc or crun for predict, train and run",
    "COGBUILD_PYTHON_PROVIDER": "a JSON manifest (URL or file) of standalone CPythons",
    "COGBUILD_CPU_INDEX_URL": "an index of torch's CPU-only wheels (default PyTorch's)",
    "COGBUILD_CPU_FIND_LINKS": "directories or pages of CPU-only wheels (PATH-style list)",
    "COGBUILD_PIP_PROXY": "0 lets pip read indexes without the metadata proxy",
    "COGBUILD_DEBIAN_IGNORE_VALID_UNTIL": "1 accepts an expired Debian Release file",
    "COGBUILD_DEBIAN_SNAPSHOT": "where a .deb the archive dropped is looked for, or off",
    "COGBUILD_CACHE_REPO": "a registry repository shared as a build cache (like --cache)",
    "COGBUILD_SIGN_KEY": "push: the cosign key file to sign with",
    "COGBUILD_SIGN_PASSWORD": "push: the signing key's passphrase (or COSIGN_PASSWORD)",
    "COGBUILD_VERIFY_KEY": "pull, predict and run use registry images signed by this key only",
    "SOURCE_DATE_EPOCH": "seconds since 1970 for every timestamp in an image (default 0)",
}

DEFAULT_READY_TIMEOUT = 300.0


def ready_timeout() -> float:
    """COGBUILD_READY_TIMEOUT: seconds to wait for a model's setup, a positive number."""
    return positive_seconds("COGBUILD_READY_TIMEOUT", DEFAULT_READY_TIMEOUT)


def positive_seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{name} must be a positive number of seconds, not {text!r}")
    return value


def source_date_epoch(environ: Mapping[str, str] = os.environ) -> int:
    """SOURCE_DATE_EPOCH (reproducible-builds.org): whole seconds since 1970, 0 when unset or empty.

    The one reader of that variable (layer mtimes, image config, SBOM); a bad value is the user's to fix."""
    value = environ.get("SOURCE_DATE_EPOCH", "").strip() or "0"
    if not (value.isascii() and value.isdigit()):
        raise UsageError(f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, not {value!r}")
    return int(value)


def help_text() -> str:
    """The `Environment:` block of `cogbuild --help`."""
    width = max(map(len, VARIABLES))
    return "\n".join(f"  {name:<{width}}  {what}" for name, what in VARIABLES.items())
