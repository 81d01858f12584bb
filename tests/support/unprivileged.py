"""Run cogbuild as `nobody`, the way a user without root runs it: the system Python with this venv's packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from components import require, unavailable

NOBODY = 65534
SYSTEM_PYTHON = Path("/usr/bin/python3")


def unprivileged_cogbuild(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600
                          ) -> subprocess.CompletedProcess:
    """`cogbuild ARGS` as uid/gid 65534 (files it needs must be theirs or readable); fails or skips when the
    host cannot do that (not root, no setpriv, no system Python of this version)."""
    require("setpriv")
    if os.geteuid() != 0:
        unavailable("needs root to become an unprivileged user for the test")
    same = subprocess.run([str(SYSTEM_PYTHON), "-c",
                           f"import sys; sys.exit(sys.version_info[:2] != {sys.version_info[:2]})"])
    if same.returncode != 0:
        unavailable("no system python of this version that an unprivileged user can run")
    site = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_relative_to(sys.prefix))
    code = (f"import site, sys; site.addsitedir({site!r}); sys.argv = ['cogbuild'] + sys.argv[1:]; "
            "from cogbuild.cli import main; main()")
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", str(SYSTEM_PYTHON),
                           "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
