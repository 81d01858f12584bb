"""What we push, other tools pull: skopeo and podman, against a real registry on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile

import pytest

from cogbuild.registry.auth import docker_config_path
from cogbuild.registry.layout import Layout
from cogbuild.registry.remote import pull_image, push_image
from oci_registry_server import require
from synthetic_images import write_image, write_index

pytestmark = pytest.mark.e2e


def _run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args[0]} failed: {result.stderr}"
    return result.stdout


def test_skopeo_copies_what_we_pushed_with_the_same_digests(registry, layout, tmp_path):
    skopeo = require("skopeo")
    amd = write_image(layout, [{"src/predict.py": b"amd"}], arch="amd64")
    arm = write_image(layout, [{"src/predict.py": b"arm"}], arch="arm64")
    index = write_index(layout, [amd, arm])
    push_image(layout, index, f"{registry.host}/ns/interop:v1")
    raw = _run(skopeo, "inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/ns/interop:v1")
    assert raw.encode() == layout.read_blob(index.digest)
    _run(skopeo, "copy", "--all", "--src-tls-verify=false", f"docker://{registry.host}/ns/interop:v1",
         f"oci:{tmp_path / 'copied'}:v1")
    copied = Layout(tmp_path / "copied")
    assert copied.resolve("v1").digest == index.digest
    for child in (amd, arm):
        assert copied.read_blob(child.digest) == layout.read_blob(child.digest)


def test_skopeo_pushed_image_is_pulled_by_us(registry, layout, tmp_path):
    skopeo = require("skopeo")
    desc = write_image(layout, [{"file": b"from skopeo"}])
    layout.tag("src", desc)
    _run(skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout.root}:src",
         f"docker://{registry.host}/ns/fromskopeo:v1")
    store = Layout(tmp_path / "ours")
    pulled = pull_image(f"{registry.host}/ns/fromskopeo:v1", store)
    manifest = json.loads(store.read_blob(pulled.digest))
    for blob in [manifest["config"], *manifest["layers"]]:
        assert store.read_blob(blob["digest"])  # present and verified by hash


def test_podman_pulls_what_we_pushed(registry, layout, tmp_path):
    podman = require("podman")
    desc = write_image(layout, [{"src/predict.py": b"print(1)\n"}], arch="amd64")
    push_image(layout, desc, f"{registry.host}/ns/podman:v1")
    docker_config_path().parent.mkdir(parents=True, exist_ok=True)
    docker_config_path().write_text("{}")  # podman insists on the file $DOCKER_CONFIG names
    runroot = tempfile.mkdtemp(prefix="cb-pr-")  # podman wants a runroot under 50 characters
    storage = ["--root", str(tmp_path / "podman-root"), "--runroot", runroot, "--storage-driver", "vfs"]
    _run(podman, *storage, "pull", "--tls-verify=false", f"{registry.host}/ns/podman:v1")
    try:
        info = json.loads(_run(podman, *storage, "image", "inspect", f"{registry.host}/ns/podman:v1"))
        assert info[0]["Digest"] == desc.digest
    finally:
        shutil.rmtree(runroot, ignore_errors=True)
