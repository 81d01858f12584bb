"""The runtime serves on the oldest Python a model may ask for (3.8), with that version's pinned
dependencies (lockfiles/runtime-py3.8.txt): setup, sync and streaming predictions, validation, the schema.

The environment is pip-installed once from PyPI with the lockfile's hashes and cached by the lockfile's
digest, so later runs need no network. (COGBUILD_TEST_PYTHON runs every runtime test on another Python.)
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from components import unavailable

from .conftest import Server

REPO = Path(__file__).resolve().parents[2]
PYTHON38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
LOCKFILE = REPO / "lockfiles" / "runtime-py3.8.txt"


@pytest.fixture(scope="module")
def runtime_deps_38() -> Path:
    """A folder with the runtime's 3.8 dependencies, installed with their pinned hashes."""
    if not PYTHON38.exists():
        unavailable(f"{PYTHON38} is not installed")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cogbuild-tests"
    target = cache / f"runtime-py3.8-{hashlib.sha256(LOCKFILE.read_bytes()).hexdigest()[:16]}"
    if not target.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=cache, prefix=".part-"))
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PIP_")}, "PIP_CONFIG_FILE": os.devnull}
        done = subprocess.run([str(PYTHON38), "-m", "pip", "install", "--isolated", "--disable-pip-version-check",
                               "--quiet", "--no-deps", "--only-binary=:all:", "--require-hashes",
                               "--index-url", "https://pypi.org/simple", "--target", str(scratch),
                               "-r", str(LOCKFILE)], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(scratch, ignore_errors=True)
            pytest.fail(f"installing {LOCKFILE.name} on Python 3.8 failed:\n{done.stderr[-2000:]}")
        os.replace(scratch, target)  # atomic: a half-installed folder is never used
    return target


@pytest.mark.network
def test_the_server_serves_on_python_38(runtime_deps_38):
    env = {"PYTHONPATH": f"{REPO / 'runtime'}:{runtime_deps_38}", "PYTHONNOUSERSITE": "1"}
    server = Server("predict.py:Echo", env=env, python=str(PYTHON38))
    tokens = None
    try:
        assert server.wait_until("READY", "SETUP_FAILED")["status"] == "READY"
        body = server.client.post("/predictions", json={"input": {"text": "ab", "count": 2}}).json()
        assert body["status"] == "succeeded", body
        assert body["output"]["text"] == "abab"
        bad = server.client.post("/predictions", json={"input": {"text": "ab", "count": "many"}})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "input", "count"]
        schema = server.client.get("/openapi.json").json()
        assert schema["components"]["schemas"]["Input"]["required"] == ["text"]
        tokens = Server("predict.py:Tokens", env=env, python=str(PYTHON38))
        assert tokens.wait_until("READY", "SETUP_FAILED")["status"] == "READY"
        streamed = tokens.client.post("/predictions", json={"input": {"words": 3}}).json()
        assert streamed["status"] == "succeeded" and "".join(streamed["output"]).split() == ["w0", "w1", "w2"]
    finally:
        server.stop()
        if tokens:
            tokens.stop()
