"""The whole path with real parts: cog.yaml -> image without Docker -> docker-registry -> podman -> prediction."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from components import podman_command
from oci_registry_server import RegistryServer, free_port, require

from cogbuild.lock import read_lock

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
    return podman_command()


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

        with serving(podman, pushed, "--tls-verify=false") as (base, container):
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
        registry.stop()


@contextmanager
def serving(podman: list[str], image: str, *options: str) -> Iterator[tuple[str, str]]:
    """Run `image` in podman on a free loopback port until it is READY: (base URL, container id)."""
    port = free_port()
    started = subprocess.run(podman + ["run", "-d", "--rm", "--network", "host", *options, "-e", f"PORT={port}",
                                       image], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip().splitlines()[-1]
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_ready(base, podman, container)
        yield base, container
    finally:
        subprocess.run(podman + ["rm", "-f", "-t", "1", container], capture_output=True)


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
    with serving(podman, f"oci:{store}:hello313:e2e") as (base, container):
        body = httpx.post(f"{base}/predictions", json={"input": {"text": "trixie"}}, timeout=30).json()
        assert body["output"] == "hello trixie"
        version = subprocess.run(podman + ["exec", container, "python3", "-c",
                                           "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True)
        assert version.stdout.strip() == "(3, 13)"


# The runtime's own pins are aiohttp 3.14.5, idna 3.20, attrs 26.1.0, typing-extensions 4.16.0.
MODEL_PINS = {"aiohttp": "3.9.5", "idna": "3.10", "attrs": "21.4.0", "typing-extensions": "4.5.0"}
REPORTING_PREDICTOR = """
import importlib.metadata, os, sys
import aiohttp, attr, idna, typing_extensions
from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> dict:
        modules = {"aiohttp": aiohttp, "attrs": attr, "idna": idna, "typing-extensions": typing_extensions}
        return {
            "imported": {"aiohttp": aiohttp.__version__, "attrs": attr.__version__, "idna": idna.__version__},
            "distributions": {name: importlib.metadata.version(name) for name in modules},
            "files": [module.__file__ for module in modules.values()],
            "sys_path": sys.path,
            "python_env": sorted(name for name in os.environ if name.startswith("PYTHON")),
        }
"""


def test_the_models_pins_of_the_runtimes_packages_lock_build_and_are_what_it_imports(tmp_path, podman):
    model = tmp_path / "pins"
    model.mkdir()
    (model / "cog.yaml").write_text('build:\n  python_version: "3.11"\n  python_requirements: requirements.txt\n'
                                    'predict: "predict.py:Predictor"\n')
    (model / "requirements.txt").write_text("".join(f"{name}=={v}\n" for name, v in MODEL_PINS.items()))
    (model / "predict.py").write_text(REPORTING_PREDICTOR)
    cogbuild(["build", "-t", "pins:e2e"], model, isolated_env(tmp_path))
    lock = read_lock(model / "cog.lock")
    for name, version in MODEL_PINS.items():
        assert [a.version for a in lock.select("linux/amd64", "cpu", "python") if a.name == name] == [version]
    runtime = {a.name: a.version for a in lock.select("linux/amd64", "cpu", "runtime")}
    assert runtime["idna"] != MODEL_PINS["idna"], "both versions are locked, each for its own environment"
    with serving(podman, f"oci:{tmp_path / 'store'}:pins:e2e") as (base, container):
        response = httpx.post(f"{base}/predictions", json={"input": {}}, timeout=60)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "succeeded", body
        report = body["output"]
        assert report["distributions"] == MODEL_PINS
        assert report["imported"] == {name: MODEL_PINS[name] for name in ("aiohttp", "attrs", "idna")}
        assert all(f.startswith("/usr/local/lib/python3.11/dist-packages/") for f in report["files"]), report
        assert not any("cogbuild" in entry for entry in report["sys_path"]), report["sys_path"]
        assert report["python_env"] == ["PYTHONUNBUFFERED"]
        # The server, meanwhile, runs on its own pinned aiohttp, which the model never sees.
        server = subprocess.run(podman + ["exec", container, "/opt/cogbuild/server/bin/python3.11", "-I", "-c",
                                          "import aiohttp, idna; print(aiohttp.__version__, idna.__version__)"],
                                capture_output=True, text=True)
        assert server.stdout.split() == [runtime["aiohttp"], runtime["idna"]], server.stderr
        assert httpx.get(f"{base}/openapi.json", timeout=10).json()["components"]["schemas"]["Output"]
