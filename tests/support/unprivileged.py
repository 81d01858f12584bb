"""Run cogbuild as `nobody`, the way a user without root runs it: the system Python with this venv's packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from components import require, unavailable

NOBODY = 65534
SYSTEM_PYTHON = Path("/usr/bin/python3")


def unprivileged_cogbuild(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
                          ) -> subprocess.CompletedProcess:
    """`cogbuild ARGS` as uid/gid 65534 (files it needs must be theirs or readable); fails or skips when the
    host cannot do that (not root, no setpriv, no system Python of this version).

    It runs from a venv of the system Python that sees this venv's packages, so the interpreters cogbuild
    starts itself with a clean environment (for the schema, for instance) find them too.
    """
    require("setpriv")
    if os.geteuid() != 0:
        unavailable("needs root to become an unprivileged user for the test")
    same = subprocess.run([str(SYSTEM_PYTHON), "-c",
                           f"import sys; sys.exit(sys.version_info[:2] != {sys.version_info[:2]})"])
    if same.returncode != 0:
        unavailable("no system python of this version that an unprivileged user can run")
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_relative_to(sys.prefix))
    venv = Path(tempfile.mkdtemp(prefix="cogbuild-nobody-venv-", dir="/tmp"))
    try:
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True)
        # This venv's packages (cogbuild is an editable install: its .pth files must be processed too).
        (_site_packages(venv) / "cogbuild-tests.pth").write_text(f"import site; site.addsitedir({site!r})\n")
        subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
        return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                               str(venv / "bin" / "python"), "-m", "cogbuild", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))
