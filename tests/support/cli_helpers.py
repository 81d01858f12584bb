"""Running `cogbuild` as users do (a subprocess), with its own store and cache, and test prerequisites."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cogbuild.settings import read_environment
from components import require, unavailable  # noqa: F401  (the CLI tests import them from here)

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "cli" / "models"


def configured_cache_root() -> Path:
    """The cache root the CLI would pass down in this test's environment (COGBUILD_CACHE as its fixtures set
    it), for tests that call library functions directly."""
    return read_environment().cache_root


def isolated_env(root: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "COGBUILD_CACHE": str(root / "cache"), "COGBUILD_STORE": str(root / "store"), **extra}
    env.pop("COGBUILD_DEBUG", None)
    return env


@dataclass
class Run:
    code: int
    out: str
    err: str


def cogbuild(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> Run:
    done = subprocess.run([sys.executable, "-m", "cogbuild", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


def copy_model(name: str, dest: Path) -> Path:
    source = REPO / "examples" / name if (REPO / "examples" / name).is_dir() else MODELS / name
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("cog.lock", "__pycache__"))
    return dest


def one_line_error(run: Run, model_logs: bool = False) -> str:
    """The error a user reads: exactly one `error:` line on stderr, no traceback of cogbuild's own
    (with `model_logs`, the model's printed logs, which may hold its own traceback, are allowed)."""
    assert "cogbuild/" not in run.err and ("Traceback" not in run.err or model_logs), run.err
    errors = [line for line in run.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.err
    return errors[0].removeprefix("error: ")
