"""The whole path with real parts: cog.yaml -> image without Docker -> docker-registry -> podman -> prediction."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from oci_registry_server import RegistryServer, free_port, require

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello"
COGBUILD = [sys.executable, "-m", "cogbuild"]


def cogbuild(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(COGBUILD + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"cogbuild {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout.strip()


def isolated_env(root: Path) -> dict[str, str]:
    return {**os.environ, "COGBUILD_CACHE": str(root / "cache"), "COGBUILD_STORE": str(root / "store")}


def copy_model(dest: Path) -> Path:
    shutil.copytree(HELLO, dest, ignore=shutil.ignore_patterns("cog.lock", "__pycache__"))
    return dest


@pytest.fixture
def podman() -> list[str]:
    require("podman")
    require("runc")
    conf = Path(os.environ.get("TMPDIR", "/tmp")) / "cogbuild-e2e-containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    os.environ["CONTAINERS_CONF"] = str(conf)
    return ["podman", "--cgroup-manager=cgroupfs", "--runtime", "runc"]


def test_two_builds_in_different_directories_give_the_same_digest(tmp_path):
    first = copy_model(tmp_path / "checkout-a" / "hello")
    digest_a = cogbuild(["build"], first, isolated_env(tmp_path / "a"))
    # Second checkout: other path, other mtimes, other umask, its own cache and store, the same lock.
    second = tmp_path / "elsewhere" / "deeper" / "model"
    shutil.copytree(first, second)
    for path in second.rglob("*"):
        os.utime(path, (1_234_567_890, 1_234_567_890))
    old_umask = os.umask(0o077)
    try:
        (second / "predict.py").chmod(0o600)
        digest_b = cogbuild(["build"], second, isolated_env(tmp_path / "b"))
    finally:
        os.umask(old_umask)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest_a)
    assert digest_a == digest_b


def test_build_push_run_predict(tmp_path, podman):
    require("docker-registry")
    model = copy_model(tmp_path / "hello")
    env = isolated_env(tmp_path)
    registry = RegistryServer(tmp_path / "registry").start()
    try:
        ref = f"{registry.host}/models/hello:e2e"
        pushed = cogbuild(["push", ref], model, env)
        assert re.fullmatch(re.escape(ref) + r"@sha256:[0-9a-f]{64}", pushed), pushed
        digest = pushed.split("@")[1]
        # The registry serves the manifest under that digest: the version ID is the content address.
        manifest = httpx.get(f"http://{registry.host}/v2/models/hello/manifests/{digest}",
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert manifest.status_code == 200
        assert manifest.headers["Docker-Content-Digest"] == digest

        port = free_port()
        started = subprocess.run(podman + ["run", "-d", "--rm", "--network", "host", "--tls-verify=false",
                                           "-e", f"PORT={port}", pushed], capture_output=True, text=True)
        assert started.returncode == 0, started.stderr
        container = started.stdout.strip().splitlines()[-1]
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_ready(base, podman, container)
            response = httpx.post(f"{base}/predictions", json={"input": {"text": "e2e"}}, timeout=30)
            body = response.json()
            assert response.status_code == 200, body
            assert body["status"] == "succeeded", body
            assert body["output"] == "hello e2e"
            assert body["id"]
            user = subprocess.run(podman + ["exec", container, "/usr/bin/python3", "-c",
                                            "import os; print(os.getuid())"], capture_output=True, text=True)
            assert user.stdout.strip() == "1000", "the image must run as its non-root user"
        finally:
            subprocess.run(podman + ["rm", "-f", "-t", "1", container], capture_output=True)
    finally:
        registry.stop()


def wait_for_ready(base: str, podman: list[str], container: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(f"{base}/health-check", timeout=2).json()
            if last.get("status") == "READY":
                return
        except (httpx.HTTPError, json.JSONDecodeError):
            pass
        time.sleep(0.3)
    logs = subprocess.run(podman + ["logs", container], capture_output=True, text=True)
    pytest.fail(f"container never became READY (last health: {last}); logs:\n{logs.stdout}{logs.stderr}")


def test_python_3_13_comes_from_trixie_and_serves(tmp_path, podman):
    model = copy_model(tmp_path / "hello313")
    (model / "cog.yaml").write_text('build:\n  python_version: "3.13"\npredict: "predict.py:Predictor"\n')
    env = isolated_env(tmp_path)
    cogbuild(["build", "-t", "hello313:e2e"], model, env)
    assert 'debian = "trixie"' in (model / "cog.lock").read_text()
    store = tmp_path / "store"
    port = free_port()
    started = subprocess.run(podman + ["run", "-d", "--rm", "--network", "host", "-e", f"PORT={port}",
                                       f"oci:{store}:hello313:e2e"], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip().splitlines()[-1]
    try:
        wait_for_ready(f"http://127.0.0.1:{port}", podman, container)
        body = httpx.post(f"http://127.0.0.1:{port}/predictions", json={"input": {"text": "trixie"}},
                          timeout=30).json()
        assert body["output"] == "hello trixie"
        version = subprocess.run(podman + ["exec", container, "python3", "-c",
                                           "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True)
        assert version.stdout.strip() == "(3, 13)"
    finally:
        subprocess.run(podman + ["rm", "-f", "-t", "1", container], capture_output=True)
