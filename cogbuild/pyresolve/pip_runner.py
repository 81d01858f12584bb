"""pip as the resolver, run in a subprocess for the target image.

Why pip: it is the resolver Cog users' requirements were written against, it honours every option a
requirements file can carry (--index-url, --extra-index-url, --find-links, --hash, -c), and with
`--dry-run --report` plus `--only-binary=:all:` it resolves from wheel metadata alone (PEP 658 metadata
files when the index has them, else --use-feature=fast-deps: the zip directory and METADATA through
HTTP range requests, 3-4x faster than downloading torch and the NVIDIA wheels whole; pip falls back to a
full download when a server refuses ranges) without building or executing any package code. No pip
configuration of this host reaches the lock (see pip_environment). The subprocess goes through _pip_shim.py
so that environment markers are evaluated for the image, not for this host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import CogbuildError
from ..settings import process_environment
from .target import Target

_SHIM = Path(__file__).with_name("_pip_shim.py")


@dataclass
class PipFailure:
    """pip exited non-zero; its errors are on stderr, the resolver's explanations on stdout."""

    stderr: str
    stdout: str = ""

    def error_lines(self) -> list[str]:
        return [line[len("ERROR: "):] for line in self.stderr.splitlines() if line.startswith("ERROR: ")]


def target_options(target: Target) -> list[str]:
    options = ["--only-binary=:all:", "--python-version", target.python_version,
               "--implementation", "cp", "--abi", target.abi]
    for platform in target.platforms():
        options += ["--platform", platform]
    return options


def pip_command(target: Target, requirements_file: Path, report_file: Path, *,
                index_url: str | None, extra_index_urls: list[str], find_links: list[str],
                constraints_file: Path | None) -> list[str]:
    command = [sys.executable, "-I", str(_SHIM), json.dumps(target.marker_environment()),
               "install", "--isolated", "--dry-run", "--ignore-installed", "--no-input",
               "--disable-pip-version-check", "--progress-bar", "off", "--no-color", "--use-feature=fast-deps",
               "--report", str(report_file), *target_options(target),
               # pip refuses platform options without --target; with --dry-run nothing is written there.
               "--target", str(report_file.parent / "never-written")]
    if index_url:
        command += ["--index-url", index_url]
    for url in extra_index_urls:
        command += ["--extra-index-url", url]
    for location in find_links:
        command += ["--find-links", location]
    if constraints_file is not None:
        command += ["-c", str(constraints_file)]
    return command + ["-r", str(requirements_file)]


MINIMUM_PIP = (25, 3)  # older pips check Requires-Python against this host, not --python-version


def require_pip() -> None:
    """The pip that resolves is part of the lock's identity: pinned in pyproject.toml, checked here."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("pip")
    except PackageNotFoundError:
        found = None
    if found is None or tuple(int(p) for p in found.split(".")[:2] if p.isdigit()) < MINIMUM_PIP:
        raise CogbuildError(f"cogbuild lock needs pip {'.'.join(map(str, MINIMUM_PIP))} or newer in "
                            f"{sys.executable}'s environment to resolve (found {found or 'none'}).")


def pip_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: this process's environment) without pip configuration, so the lock depends on cog.yaml, requirements and cogbuild alone.

    `--isolated` skips the user's pip.conf and PIP_* variables but still reads the machine's
    (/etc/pip.conf, $XDG_CONFIG_DIRS/pip/pip.conf, the venv's pip.conf), where a constraint or an index
    would change the lock; PIP_CONFIG_FILE=os.devnull makes pip read no file at all. cogbuild's own options
    (COGBUILD_CPU_FIND_LINKS, …) reach pip as explicit arguments.
    """
    base = process_environment() if base is None else base
    env = {name: value for name, value in base.items() if not name.upper().startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def run_pip(command: list[str], report_file: Path) -> dict | PipFailure:
    """The pip installation report (pip's JSON --report), or the failure pip explained."""
    require_pip()
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=pip_environment())
    except subprocess.TimeoutExpired as exc:
        raise CogbuildError("pip took more than 30 minutes to resolve the Python requirements.") from exc
    if completed.returncode != 0:
        return PipFailure(completed.stderr, completed.stdout)
    return json.loads(report_file.read_text())
