"""Choosing the image (images.py) and the runtime (container.py), offline: synthetic OCI layouts and
PATHs built here."""

from __future__ import annotations

import hashlib
import json
import re
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from cli_helpers import cogbuild, require

from cogbuild.container import BundleRuntime, EngineRuntime, adjust_bundle_config, choose_runtime
from cogbuild.images import (find_image, host_platform, podman_image_layout, prune_stale, single_image_layout,
                             write_oci_archive)
from cogbuild.errors import CogbuildError, UsageError
from cogbuild.layers.descriptor import Descriptor
from cogbuild.registry.layout import Layout
from oci_images import write_image, write_index

HERE = host_platform()
OTHER = "linux/arm64" if HERE == "linux/amd64" else "linux/amd64"


@pytest.fixture
def store(tmp_path) -> Layout:
    return Layout(tmp_path / "store").init()


def test_picks_this_platform_and_the_cpu_variant_without_gpu(cache_root, store):
    images = [write_image(store, p, v) for p in (OTHER, HERE) for v in ("cpu", "gpu")]
    store.tag("m:latest", write_index(store, images))
    image = find_image("m:latest", store, gpu=False, cache_root=cache_root)
    assert image.manifest.digest == images[2].digest
    assert image.variant == "cpu"


def test_picks_the_gpu_variant_when_asked_and_present(cache_root, store):
    cpu, gpu = write_image(store, HERE, "cpu"), write_image(store, HERE, "gpu")
    store.tag("m:latest", write_index(store, [cpu, gpu]))
    assert find_image("m:latest", store, gpu=True, cache_root=cache_root).manifest.digest == gpu.digest


def test_gpu_wanted_but_only_cpu_built_falls_back_to_cpu(cache_root, store):
    cpu = write_image(store, HERE, "cpu")
    store.tag("m:latest", write_index(store, [cpu]))
    assert find_image("m:latest", store, gpu=True, cache_root=cache_root).manifest.digest == cpu.digest


def test_nested_indexes_are_followed(cache_root, store):
    cpu = write_image(store, HERE, "cpu")
    store.tag("m:v1", write_index(store, [write_index(store, [cpu])]))
    assert find_image("m:v1", store, gpu=False, cache_root=cache_root).manifest.digest == cpu.digest


def test_a_bare_name_means_latest(cache_root, store):
    cpu = write_image(store, HERE, "cpu")
    store.tag("m:latest", cpu)
    assert find_image("m", store, gpu=False, cache_root=cache_root).manifest.digest == cpu.digest


def test_no_image_for_this_platform_says_which_exist(cache_root, store):
    store.tag("m:latest", write_index(store, [write_image(store, OTHER, "cpu")]))
    with pytest.raises(UsageError, match=f"the image m:latest has no {HERE} image \\(it has {OTHER}\\)"):
        find_image("m:latest", store, gpu=False, cache_root=cache_root)


def test_an_unknown_local_name_is_not_sent_to_docker_hub(cache_root, store):
    with pytest.raises(UsageError, match=r"no image named 'nothing:here' in the local store .*cogbuild build -t"):
        find_image("nothing:here", store, gpu=False, cache_root=cache_root)


def test_the_schema_is_read_from_label_or_annotation_and_a_damaged_one_is_named(cache_root, store):
    schema = {"components": {"schemas": {"Input": {"properties": {}}}}}
    store.tag("good:latest", write_image(store, HERE, "cpu", {"run.cog.openapi_schema": json.dumps(schema)}))
    store.tag("bad:latest", write_image(store, HERE, "cpu", {"run.cog.openapi_schema": "{not json"}))
    store.tag("none:latest", write_image(store, HERE, "cpu"))
    store.tag("big:latest", write_image(store, HERE, "cpu", annotations={"run.cog.openapi_schema": json.dumps(schema)}))
    assert find_image("good:latest", store, gpu=False, cache_root=cache_root).schema == schema
    assert find_image("big:latest", store, gpu=False, cache_root=cache_root).schema == schema  # too large for a label: an annotation
    assert find_image("none:latest", store, gpu=False, cache_root=cache_root).schema is None
    with pytest.raises(CogbuildError, match="damaged OpenAPI schema"):
        _ = find_image("bad:latest", store, gpu=False, cache_root=cache_root).schema


def test_oci_layout_paths(cache_root, tmp_path):
    layout = Layout(tmp_path / "out").init()
    one = write_image(layout, HERE, "cpu")
    layout.tag("only", one)
    assert find_image(str(tmp_path / "out"), Layout(tmp_path / "store"), gpu=False, cache_root=cache_root).manifest.digest == one.digest
    assert find_image(f"oci:{tmp_path / 'out'}:only", Layout(tmp_path / "s"), gpu=False, cache_root=cache_root).manifest.digest == one.digest
    layout.tag("second", write_image(layout, HERE, "gpu"))
    with pytest.raises(UsageError, match="holds 2 named images; name one as oci:"):
        find_image(f"oci:{tmp_path / 'out'}", Layout(tmp_path / "s"), gpu=False, cache_root=cache_root)
    with pytest.raises(UsageError, match="is not an OCI image layout"):
        find_image(f"oci:{tmp_path / 'missing'}", Layout(tmp_path / "s"), gpu=False, cache_root=cache_root)


def test_single_image_layout_names_only_the_chosen_manifest(cache_root, store):
    chosen = write_image(store, HERE, "cpu")
    store.tag("m:latest", write_index(store, [chosen, write_image(store, HERE, "gpu")]))
    image = find_image("m:latest", store, gpu=False, cache_root=cache_root)
    with single_image_layout(image) as root:
        index = json.loads((root / "index.json").read_text())
        assert [m["digest"] for m in index["manifests"]] == [chosen.digest]
        assert index["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "run"}
        assert Layout(root).read_blob(chosen.digest)  # blobs reachable, verified by hash
    assert not root.exists()


def test_podman_layout_path_is_a_valid_stable_image_name(cache_root, store, monkeypatch, tmp_path):
    odd = tmp_path / "Upper" / ".hidden"
    odd.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(odd))  # podman could not name an image after this path
    monkeypatch.setattr("tempfile.tempdir", None)
    store.tag("m:latest", write_image(store, HERE, "cpu"))
    image = find_image("m:latest", store, gpu=False, cache_root=cache_root)
    first, again = podman_image_layout(image), podman_image_layout(image)
    assert first == again, "one path per manifest, so podman keeps one name per image"
    assert str(first).startswith("/tmp/cogbuild-oci-")
    assert re.fullmatch(r"[a-z0-9/_.-]+", str(first)) and "/." not in str(first)
    index = json.loads((first / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [image.manifest.digest]
    assert Layout(first).read_blob(image.manifest.digest)


def test_bundle_config_gets_host_network_port_and_no_terminal(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "process": {"terminal": True, "env": ["PATH=/usr/bin", "PORT=1"], "args": ["python3"]},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "mount"}]},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]}))
    adjust_bundle_config(config, {"PORT": "5123", "X": "y"})
    got = json.loads(config.read_text())
    assert got["process"]["terminal"] is False
    assert got["process"]["env"] == ["PATH=/usr/bin", "PORT=5123", "X=y"]
    assert got["process"]["args"] == ["python3"]
    assert [ns["type"] for ns in got["linux"]["namespaces"]] == ["pid", "mount"]
    if Path("/etc/resolv.conf").is_file():
        assert {"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf",
                "options": ["rbind", "ro"]} in got["mounts"]


# -- which runtime -----------------------------------------------------------------------------------
def path_with(tmp_path: Path, programs: list[str]) -> str:
    """A PATH holding links to the real programs named (those installed), and nothing else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for program in programs:
        real = shutil.which(program)
        if real:
            (bin_dir / program).symlink_to(real)
    return str(bin_dir)


def test_without_podman_or_docker_the_daemonless_runtime_is_chosen(cache_root, tmp_path, monkeypatch):
    require("runc", "umoci")
    monkeypatch.setenv("PATH", path_with(tmp_path, ["runc", "umoci"]))
    assert choose_runtime(cache_root=cache_root) == BundleRuntime("runc", cache_root)


def test_podman_is_preferred_when_present(cache_root, tmp_path, monkeypatch):
    require("podman")
    monkeypatch.setenv("PATH", path_with(tmp_path, ["podman", "docker", "runc", "umoci"]))
    assert choose_runtime(cache_root=cache_root) == EngineRuntime("podman")


def test_no_runtime_at_all_is_one_sentence(cache_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with(tmp_path, []))
    with pytest.raises(CogbuildError, match="no container runtime found: install podman"):
        choose_runtime(cache_root=cache_root)


def test_an_explicit_runtime_must_be_installed(cache_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", path_with(tmp_path, ["runc"]))
    with pytest.raises(UsageError, match="the container runtime 'docker' is not installed"):
        choose_runtime("docker", cache_root=cache_root)
    if shutil.which("runc", path=os.environ["PATH"]):
        with pytest.raises(UsageError, match="running with runc needs umoci"):
            choose_runtime("runc", cache_root=cache_root)
    with pytest.raises(UsageError, match="unknown container runtime 'lxc'"):
        choose_runtime("lxc", cache_root=cache_root)
    with pytest.raises(UsageError, match=r"running with containerd needs its client ctr; install it"):
        choose_runtime("containerd", cache_root=cache_root)


def test_the_archive_handed_to_docker_load_is_a_valid_oci_archive(cache_root, tmp_path):
    """What `docker load` gets, checked by a real reader of OCI archives (skopeo)."""
    require("skopeo")
    store = Layout(tmp_path / "store").init()
    chosen = write_image(store, HERE, "cpu", {"x": "y"})
    store.tag("m:latest", write_index(store, [chosen, write_image(store, HERE, "gpu")]))
    image = find_image("m:latest", store, gpu=False, cache_root=cache_root)
    archive = tmp_path / "image.tar"
    with open(archive, "wb") as f:
        write_oci_archive(image, f, "cogbuild.local/run:abc")
    done = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{archive}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(done.stdout.encode()).hexdigest() == chosen.digest.split(":")[1]
    config = subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{archive}"], capture_output=True,
                            text=True)
    assert json.loads(config.stdout)["config"]["Labels"] == {"x": "y"}


def test_a_damaged_store_entry_is_one_sentence(cache_root, store):
    chosen = write_image(store, HERE, "cpu")
    store.tag("m:latest", chosen)
    config_digest = store.read_json(chosen.digest)["config"]["digest"]
    store.blob_path(config_digest).write_bytes(b"{tampered}")
    with pytest.raises(CogbuildError, match=r"the image m:latest in .* is damaged: .*corrupt.*; pull or build it"):
        find_image("m:latest", store, gpu=False, cache_root=cache_root)


def test_a_pulled_reference_already_in_the_store_runs_without_the_network(cache_root, store):
    chosen = write_image(store, HERE, "cpu")
    store.tag("127.0.0.1:1/team/model:v1", chosen)  # port 1: any pull attempt would fail
    assert find_image("127.0.0.1:1/team/model:v1", store, gpu=False, cache_root=cache_root).manifest.digest == chosen.digest


def test_stale_unpacks_are_pruned_but_fresh_ones_kept(tmp_path):
    old, fresh = tmp_path / ("a" * 64), tmp_path / ("b" * 64)
    for entry in (old, fresh):
        (entry / "rootfs").mkdir(parents=True)
        (entry / "config.json").write_text("{}")
    os.utime(old, (1, 1))
    prune_stale(tmp_path, max_age=3600)
    assert not old.exists() and fresh.exists()


def oci_archive(tmp_path: Path) -> tuple[Path, Descriptor]:
    """An OCI archive of one image tagged v1, and that image's manifest."""
    layout = Layout(tmp_path / "out").init()
    chosen = write_image(layout, HERE, "cpu")
    layout.tag("v1", chosen)
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("oci-layout", "index.json", "blobs"):
            tar.add(tmp_path / "out" / name, name)
    return archive, chosen


def test_oci_archives_are_unpacked_into_the_cache_and_checked(cache_root, tmp_path):
    archive, chosen = oci_archive(tmp_path)
    empty = Layout(tmp_path / "store")
    assert find_image(f"oci-archive:{archive}", empty, gpu=False, cache_root=cache_root).manifest.digest == chosen.digest
    assert find_image(f"oci-archive:{archive}:v1", empty, gpu=False, cache_root=cache_root).manifest.digest == chosen.digest
    assert len(list((cache_root / "archives").iterdir())) == 1, "unpacked once, no partial left"
    (tmp_path / "junk.tar").write_bytes(b"junk")
    with pytest.raises(UsageError, match="junk.tar is not an OCI archive \\(it is not a tar file\\)"):
        find_image(f"oci-archive:{tmp_path / 'junk.tar'}", empty, gpu=False, cache_root=cache_root)
    with pytest.raises(UsageError, match="there is no OCI archive"):
        find_image(f"oci-archive:{tmp_path / 'none.tar'}", empty, gpu=False, cache_root=cache_root)


@pytest.mark.parametrize("variables, cache", [({"COGBUILD_CACHE": "own", "XDG_CACHE_HOME": "xdg"}, "own"),
                                              ({"XDG_CACHE_HOME": "xdg"}, "xdg/cogbuild"),
                                              ({}, "home/.cache/cogbuild")])
def test_the_cli_passes_down_the_cache_root_its_settings_name(tmp_path, variables, cache):
    archive, _ = oci_archive(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("COGBUILD_CACHE", "XDG_CACHE_HOME")}
    env.update({"HOME": str(tmp_path / "home"), "COGBUILD_STORE": str(tmp_path / "store")},
               **{name: str(tmp_path / folder) for name, folder in variables.items()})
    shown = cogbuild(["show", f"oci-archive:{archive}:v1"], tmp_path, env)
    assert shown.code == 0, shown.err
    assert len(list((tmp_path / cache / "archives").iterdir())) == 1  # unpacked there, as the library was told
