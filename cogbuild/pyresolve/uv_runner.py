"""uv as the resolver, where it can answer what pip would: wheels only, from indexes, for the image.

Why: `uv pip compile` resolves the torch/transformers set several times faster than pip (pip starts
slowly, reads metadata one wheel at a time and parses every page in Python). It resolves for the image,
not this host: `--python-platform <arch>-manylinux_<glibc>` picks the wheels and `--python-version` the
markers, `--only-binary :all:` executes nothing, and `--index-strategy unsafe-best-match` weighs every
index as pip does. uv is pinned in pyproject.toml; no uv configuration of this host reaches the lock.

uv writes a pip-compile-style file (name==version, the hashes of the fitting files, `# via` parents,
its indexes); lockfile.wheels_for_lockfile then picks each project's one file from the index pages as pip
would, with its size. What uv is not asked to do (sdists, project files, find-links, --hash lines, other
pip options) or fails at goes to pip, which also writes the error messages: uv never decides alone that a
lock cannot be made.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ..cache import cache_dir
from ..errors import CogbuildError, UsageError
from .target import Target

# The glibc levels uv 0.13 names in --python-platform (manylinux_2_17 … 2_40); others go to pip.
_UV_GLIBC_MINORS = {17, 28, *range(31, 41)}


def uv_binary() -> str | None:
    """The pinned uv's executable, or None when this environment has none (pip then resolves alone)."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    try:
        return find_uv_bin()
    except FileNotFoundError:
        return None


def uv_platform(target: Target) -> str | None:
    """uv's name for the image's platform, e.g. x86_64-manylinux_2_36; None when uv has no such name."""
    minor = int(target.glibc.split(".")[1])
    return f"{target.arch}-manylinux_2_{minor}" if minor in _UV_GLIBC_MINORS else None


def uv_command(uv: str, target: Target, requirements_file: Path, output_file: Path, cache: Path, *,
               index_urls: list[str], constraints_file: Path | None) -> list[str]:
    platform = uv_platform(target)
    assert platform is not None  # callers ask uv_platform first
    command = [uv, "pip", "compile", "--quiet", "--no-config", "--no-header", "--generate-hashes",
               "--emit-index-url", "--only-binary", ":all:", "--index-strategy", "unsafe-best-match",
               "--python-version", target.python_full_version or target.python_version,
               "--python-platform", platform, "--cache-dir", str(cache), "--output-file", str(output_file),
               "--index-url", index_urls[0]]
    for url in index_urls[1:]:
        command += ["--extra-index-url", url]
    if constraints_file is not None:
        command += ["--constraint", str(constraints_file)]
    return command + [str(requirements_file)]


def uv_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`environ` without uv's and pip's settings (uv reads PIP_INDEX_URL-like UV_* variables)."""
    return {name: value for name, value in environ.items() if not name.upper().startswith(("UV_", "PIP_"))}


def compile_with_uv(target: Target, requirements_file: Path, workdir: Path, *, index_urls: list[str],
                    constraints_file: Path | None) -> Path | None:
    """uv's pinned, hashed requirements file for `target` (read by lockfile.wheels_for_lockfile), or None
    when uv is not wanted, not installed, has no name for the platform or could not resolve."""
    uv = uv_binary() if uv_wanted() else None
    if uv is None or uv_platform(target) is None:
        return None
    output = workdir / "uv-compiled.txt"
    command = uv_command(uv, target, requirements_file, output, cache_dir() / "uv", index_urls=index_urls,
                         constraints_file=constraints_file)
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=uv_environment())
    except subprocess.TimeoutExpired as exc:
        raise CogbuildError("uv took more than 30 minutes to resolve the Python requirements.") from exc
    if completed.returncode != 0:
        return None
    # A constraint file names versions, it never makes a project needed: `-c` is no parent.
    lines = output.read_text().splitlines()
    output.write_text("".join(f"{line}\n" for line in lines if not _CONSTRAINT_VIA.match(line)))
    return output


_CONSTRAINT_VIA = re.compile(r"\s*#\s+-c ")


def uv_wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """COGBUILD_LOCK_RESOLVER: uv (the default) where it can, or pip alone."""
    value = environ.get("COGBUILD_LOCK_RESOLVER", "uv")
    if value not in ("uv", "pip"):
        raise UsageError(f"COGBUILD_LOCK_RESOLVER is {value!r}; it must be uv or pip.")
    return value == "uv"
