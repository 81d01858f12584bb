"""Versions Debian does not carry come from a standalone CPython: lock, build, run in podman, and the
prediction reports the interpreter that was asked for.

python-build-standalone cannot be downloaded here, so the tarballs are pyenv's CPython 3.10.13 and 3.12.1
packed into its install_only layout (tests/support/standalone_python.py) and served from loopback through a
COGBUILD_PYTHON_PROVIDER manifest. The OS under them is Debian trixie, from Debian's archive.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import httpx
import pytest

from standalone_python import provider_manifest, standalone_tarball
from static_server import StaticServer
from test_walking_skeleton import cogbuild, podman, serving  # noqa: F401 (podman is a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.network]

PREDICT = """\
import sys

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        return sys.version
"""


@pytest.fixture(scope="module")
def python_provider():
    builds = {version: standalone_tarball(version) for version in ("3.10.13", "3.12.1")}
    with StaticServer() as server:
        files, manifest = provider_manifest(builds, server.url)
        server.files.update(files)
        yield manifest


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One download cache for the module: the builds share trixie's packages."""
    return tmp_path_factory.mktemp("cache")


def build_model(root: Path, python_version: str, provider: str, cache: Path, store: Path) -> tuple[Path, str]:
    model = root / "model"
    model.mkdir(parents=True)
    (model / "predict.py").write_text(PREDICT)
    (model / "cog.yaml").write_text(f'build:\n  python_version: "{python_version}"\npredict: "predict.py:Predictor"\n')
    env = {**os.environ, "COGBUILD_CACHE": str(cache), "COGBUILD_STORE": str(store),
           "COGBUILD_PYTHON_PROVIDER": provider}
    digest = cogbuild(["build", "-t", "standalone:e2e"], model, env)
    return model, digest


def predict_in_podman(podman: list[str], store: Path) -> str:
    with serving(podman, f"oci:{store}:standalone:e2e") as (base, _):
        body = httpx.post(f"{base}/predictions", json={"input": {}}, timeout=60).json()
        assert body["status"] == "succeeded", body
        return body["output"]


def image_layers(store: Path, digest: str) -> list[tarfile.TarFile]:
    def blob(d: str) -> bytes:
        return (store / "blobs" / "sha256" / d.split(":")[1]).read_bytes()

    manifest = json.loads(blob(digest))
    return [tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layer["digest"])))) for layer in manifest["layers"]]


@pytest.mark.parametrize(("python_version", "expected"), [("3.10", "3.10.13"), ("3.12", "3.12.1"),
                                                          ("3.12.1", "3.12.1")])
def test_a_standalone_cpython_serves_the_requested_version(tmp_path, podman, python_provider, shared_cache,
                                                           python_version, expected):
    store = tmp_path / "store"
    model, digest = build_model(tmp_path, python_version, python_provider, shared_cache, store)
    lock = (model / "cog.lock").read_text()
    assert 'python-provider = "standalone"' in lock and 'debian = "trixie"' in lock
    assert 'group = "interpreter"' in lock and f'version = "{expected}"' in lock
    assert predict_in_podman(podman, store).startswith(expected + " ")

    minor = ".".join(expected.split(".")[:2])
    tag = "cpython-" + minor.replace(".", "")
    os_layer, interpreter_layer = image_layers(store, digest)[:2]
    assert not any(name.startswith("opt/python") for name in os_layer.getnames()), "Debian's OS layer alone"
    names = set(interpreter_layer.getnames())
    assert f"opt/python/bin/python{minor}" in names
    # The standard library carries bytecode that the image's own (standalone) interpreter compiled.
    assert f"opt/python/lib/python{minor}/__pycache__/os.{tag}.pyc" in names


def test_a_standalone_image_rebuilds_to_the_same_digest(tmp_path, python_provider, shared_cache):
    """Fresh store and layer cache, same lock: the bytecode and every layer come out bit for bit the same."""
    _, first = build_model(tmp_path / "a", "3.12.1", python_provider, shared_cache, tmp_path / "a" / "store")
    _, second = build_model(tmp_path / "b", "3.12.1", python_provider, shared_cache, tmp_path / "b" / "store")
    assert first == second
