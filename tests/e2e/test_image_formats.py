"""The built images as other tools see them: umoci unpacks them, skopeo reads them, podman loads the archives,
and the arm64 image (built on this amd64 host without emulation) carries aarch64 binaries."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oci_registry_server import require

REPO = Path(__file__).resolve().parents[2]
ELF_MACHINE = {"amd64": 62, "arm64": 183}  # e_machine: EM_X86_64, EM_AARCH64


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("formats")
    model = root / "hello"
    shutil.copytree(REPO / "examples" / "hello", model, ignore=shutil.ignore_patterns("cog.lock"))
    env = {**os.environ, "COGBUILD_CACHE": str(root / "cache"), "COGBUILD_STORE": str(root / "store")}
    outputs = {"layout": root / "layout", "oci": root / "hello-oci.tar", "docker": root / "hello-docker.tar"}
    digests = set()
    for option in (str(outputs["layout"]), f"oci-archive:{outputs['oci']}", f"docker-archive:{outputs['docker']}"):
        done = subprocess.run([sys.executable, "-m", "cogbuild", "-q", "build", "--platform",
                               "linux/amd64,linux/arm64", "-t", "hello:formats", "-o", option],
                              cwd=model, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        digests.add(done.stdout.strip())
    assert len(digests) == 1, "rebuilding for each output must give the same index"
    return {"root": root, "digest": digests.pop(), **outputs}


def test_the_index_holds_both_platforms(built):
    index = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci:{built['layout']}:hello:formats"],
                                      capture_output=True, text=True, check=True).stdout)
    platforms = sorted(m["platform"]["architecture"] for m in index["manifests"])
    assert platforms == ["amd64", "arm64"]


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_umoci_unpacks_each_image_and_binaries_match_the_platform(built, arch, tmp_path):
    require("umoci")
    require("skopeo")
    layout = built["layout"]
    index = json.loads((layout / "blobs" / "sha256" / built["digest"].split(":")[1]).read_text())
    manifest = next(m for m in index["manifests"] if m["platform"]["architecture"] == arch)
    # umoci takes a tag: a copy of the layout whose index names only this platform's manifest.
    one = tmp_path / "one"
    shutil.copytree(layout, one)
    tagged = {**manifest, "annotations": {"org.opencontainers.image.ref.name": "img"}}
    (one / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [tagged]}))
    inspect = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{tmp_path / 'one'}:img"],
                                        capture_output=True, text=True, check=True).stdout)
    assert inspect["architecture"] == arch
    assert inspect["config"]["User"] == "1000:1000"
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'one'}:img", str(bundle)],
                   check=True, capture_output=True)
    python = bundle / "rootfs" / "usr" / "bin" / "python3.11"
    header = python.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == ELF_MACHINE[arch]
    assert (bundle / "rootfs" / "bin").is_symlink()
    assert (bundle / "rootfs" / "src" / "predict.py").is_file()
    assert (bundle / "rootfs" / "etc" / "ssl" / "certs" / "ca-certificates.crt").stat().st_size > 100_000
    # Bytecode comes from the image's own interpreter, which runs here only for this host's architecture.
    pycs = [bundle / "rootfs" / "usr/lib/python3.11/__pycache__/os.cpython-311.pyc",
            bundle / "rootfs" / "opt/cogbuild/server/lib/python3.11/site-packages/aiohttp/__pycache__/"
                                "__init__.cpython-311.pyc",
            bundle / "rootfs" / "usr/local/lib/python3.11/dist-packages/cog/__pycache__/__init__.cpython-311.pyc"]
    host = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    assert [p.is_file() for p in pycs] == [arch == host] * 3
    annotations = json.loads((layout / "blobs" / "sha256" / manifest["digest"].split(":")[1]).read_text())["annotations"]
    assert annotations["run.cog.bytecode"] == ("image interpreter" if arch == host else "none")


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_podman_loads_the_archives(built, kind):
    require("podman")
    conf = built["root"] / "containers.conf"
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    transport = "oci-archive" if kind == "oci" else "docker-archive"
    loaded = subprocess.run(["podman", "load", "-i", str(built[kind])], capture_output=True, text=True, env=env)
    assert loaded.returncode == 0, loaded.stderr
    out = subprocess.run(["podman", "run", "--rm", "--cgroup-manager=cgroupfs", "--runtime", "runc",
                          "--entrypoint", "/usr/bin/python3", f"{transport}:{built[kind]}", "-c",
                          "import platform, cog; print(platform.machine())"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "x86_64"
