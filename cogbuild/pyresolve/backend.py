"""What an sdist needs, from its own build backend: its build requirements and, when PKG-INFO does not
declare them statically, its dependencies.

Building a wheel needs the build backend's requirements ([build-system] requires, plus what the
backend's `get_requires_for_build_wheel` adds); the lock pins them as wheels, so the build installs them
offline. An old sdist (gputil 1.4.0: setup.py only) says what it depends on only when its backend runs
(PEP 517 `prepare_metadata_for_build_wheel`, or a wheel build where the backend lacks that hook). Locking
asks once and records the answers, so building never derives them again. The backend runs on this host, in
a fresh directory of its build requirements (wheels only, from the lock's indexes, with no pip
configuration of the host): the same sdist and indexes give the same answers, except for a setup.py that
computes them from the interpreter it runs on, which here is the host's, not the image's.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from pyproject_hooks import BuildBackendHookCaller

from ..errors import CogbuildError
from .pip_runner import pip_environment, require_pip

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# PEP 517's fallback for a project without [build-system]: setuptools, as pip assumes.
LEGACY_REQUIRES = ["setuptools>=40.8.0"]
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"


def ask_backend(sdist: Path, workdir: Path, index_options: list[str]) -> tuple[list[str], str]:
    """(the build requirements, the METADATA text) the sdist's build backend reports; `index_options` are
    pip's (--index-url, …) for installing the backend's own requirements."""
    source = _unpack(sdist, workdir / "source")
    requires, backend, backend_path = _build_system(source)
    env_dir = workdir / "build-env"
    _install(requires, env_dir, index_options, sdist.name)
    hooks = BuildBackendHookCaller(str(source), backend, backend_path, runner=_runner(env_dir))
    try:
        extra = hooks.get_requires_for_build_wheel()
        _install(extra, env_dir, index_options, sdist.name)
        out = workdir / "metadata"
        out.mkdir()
        distinfo = hooks.prepare_metadata_for_build_wheel(str(out))
    except subprocess.CalledProcessError as exc:
        raise CogbuildError(f"The build backend of {sdist.name} failed to report what it needs: "
                            f"{_last_line(exc.stderr)}.") from None
    return [*requires, *extra], (out / distinfo / "METADATA").read_text(encoding="utf-8")


def _unpack(sdist: Path, into: Path) -> Path:
    """The sdist's single top-level directory, unpacked (tar's `data` filter: no links or paths out)."""
    into.mkdir(parents=True)
    try:
        if sdist.name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as archive:
                archive.extractall(into)
        else:
            with tarfile.open(sdist) as archive:
                archive.extractall(into, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        raise CogbuildError(f"{sdist.name} is not a readable source archive ({exc}).") from None
    tops = list(into.iterdir())
    if len(tops) != 1 or not tops[0].is_dir():
        raise CogbuildError(f"{sdist.name} does not hold one top-level directory, as an sdist must.")
    return tops[0]


def _build_system(source: Path) -> tuple[list[str], str, list[str] | None]:
    pyproject = source / "pyproject.toml"
    return build_system(pyproject.read_text(encoding="utf-8") if pyproject.exists() else None)


def build_system(pyproject: str | None) -> tuple[list[str], str, list[str] | None]:
    """(requires, build-backend, backend-path) of a pyproject.toml's text, PEP 517's defaults without one."""
    try:
        table = tomllib.loads(pyproject).get("build-system", {}) if pyproject else {}
    except tomllib.TOMLDecodeError as exc:
        raise CogbuildError(f"An sdist's pyproject.toml is not valid TOML ({exc}).") from None
    if "build-backend" not in table:
        return list(table.get("requires", LEGACY_REQUIRES)), LEGACY_BACKEND, None
    return list(table.get("requires", [])), table["build-backend"], table.get("backend-path")


def _install(requirements: Sequence[str], env_dir: Path, index_options: list[str], what: str) -> None:
    if not requirements:
        return
    require_pip()
    command = [sys.executable, "-m", "pip", "install", "--isolated", "--no-input", "--disable-pip-version-check",
               "--progress-bar", "off", "--only-binary=:all:", "--upgrade", "--target", str(env_dir),
               *index_options, *requirements]
    done = subprocess.run(command, capture_output=True, text=True, env=pip_environment(), timeout=900)
    if done.returncode != 0:
        raise CogbuildError(f"The build requirements of {what} ({', '.join(requirements)}) could not be "
                            f"installed to read its dependencies: {_last_line(done.stderr)}.")


def _runner(env_dir: Path):
    """pyproject_hooks' runner with the build requirements first on the path and no pip configuration."""
    def run(cmd: list[str], cwd: str | None = None, extra_environ: dict[str, str] | None = None) -> None:
        env = {**pip_environment(), **(extra_environ or {}), "PYTHONPATH": str(env_dir), "SOURCE_DATE_EPOCH": "0",
               "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=900)

    return run


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return (lines[-1] if lines else "no output").rstrip(".")
