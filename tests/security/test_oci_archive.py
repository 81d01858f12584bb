"""Untrusted `oci-archive:` files: only a layout's own names, as regular files, ever reach the disk."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from cogbuild.errors import UsageError
from cogbuild.images import find_image, host_platform
from cogbuild.layers.descriptor import Descriptor
from cogbuild.registry.archive import ArchiveError, unpack_oci_archive, write_archive
from cogbuild.registry.layout import Layout
from components import require
from crafted import Member, image_layout, layout_members, tar_bytes

ARCH = host_platform().split("/")[1]
BLOB = "blobs/sha256/" + "ab" * 32  # a well-formed blob name (its content never matters: it is refused first)


@pytest.fixture
def world(tmp_path):
    """A directory beside the cache (the cache_root fixture) and the store, holding a file an attacker would
    like to reach."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"untouched")
    return tmp_path, outside


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every path below root with its content (files) or link target (links), without following links."""
    found: dict[str, bytes | str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            found[rel] = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else "dir"
    return found


def hostile_archives(outside: Path) -> dict[str, list[Member]]:
    victim = str(outside / "victim")
    return {
        "symlink to a host directory": [Member("blobs", "symlink", linkname=str(outside))],
        "symlink, then a file written through it": [
            Member("blobs/sha256", "symlink", linkname=str(outside)), Member(BLOB, data=b"x")],
        "relative symlink chain climbing out": [
            Member("a", "symlink", linkname="."), Member("b", "symlink", linkname="a/a/a/../../.."),
            Member("b/escaped", data=b"x")],
        "hardlink to a host file": [Member("oci-layout", "hardlink", linkname=victim)],
        "blob that is a symlink to a host file": [Member(BLOB, "symlink", linkname=victim)],
        "blob that is a hardlink to a host file": [Member(BLOB, "hardlink", linkname=victim)],
        "parent-directory name": [Member("../outside/escaped", data=b"x")],
        "parent-directory inside blobs": [Member("blobs/sha256/../../../outside/escaped", data=b"x")],
        "absolute name": [Member(str(outside / "absolute"), data=b"x")],
        "character device": [Member(BLOB, "chardev")],
        "block device": [Member("dev", "blockdev")],
        "fifo": [Member("index.json", "fifo")],
        "name a layout does not have": [Member("tmp/notes.txt", data=b"x")],
        "blob name in upper case": [Member("blobs/sha256/" + "AB" * 32, data=b"x")],
        "blob name of the wrong length": [Member("blobs/sha256/" + "ab" * 31, data=b"x")],
        "directory with another name": [Member("blobs/md5", "dir")],
    }


@pytest.mark.parametrize("case", sorted(hostile_archives(Path("/x"))))
def test_a_hostile_archive_is_refused_and_writes_nothing_outside(cache_root, world, case):
    tmp_path, outside = world
    archive = tmp_path / "image.tar"
    good = layout_members(image_layout(ARCH))
    archive.write_bytes(tar_bytes(good[:2] + hostile_archives(outside)[case] + good[2:]))
    before = snapshot(tmp_path)
    with pytest.raises(UsageError) as refused:
        find_image(f"oci-archive:{archive}", Layout(tmp_path / "store"), gpu=False, cache_root=cache_root)
    message = str(refused.value)
    assert "\n" not in message and str(archive) in message
    assert "is not an OCI archive cogbuild will open" in message, message
    after = snapshot(tmp_path)
    in_cache = {k: v for k, v in after.items() if k.startswith("cache")}
    assert after == {**before, **in_cache}, "nothing new outside the cache"
    assert not [k for k in after if k.startswith("cache/archives/") and k.count("/") > 2], "no partial unpack is left"
    assert (outside / "victim").read_bytes() == b"untouched"


def test_a_well_formed_archive_with_dot_slash_names_and_docker_extras_opens(cache_root, world):
    tmp_path, _ = world
    files = image_layout(ARCH)
    members = [Member("./", "dir"), Member("./blobs/", "dir"), Member("./blobs/sha256/", "dir")]
    members += [Member(f"./{name}", data=data) for name, data in files.items()]
    members += [Member("manifest.json", data=b"[]"), Member("repositories", data=b"{}")]
    archive = tmp_path / "image.tar"
    archive.write_bytes(tar_bytes(members))
    image = find_image(f"oci-archive:{archive}:v1", Layout(tmp_path / "store"), gpu=False, cache_root=cache_root)
    assert image.config["architecture"] == ARCH
    unpacked = image.layout.root
    assert sorted(p.name for p in unpacked.iterdir()) == ["blobs", "index.json", "oci-layout"], "extras not written"


def test_a_blob_whose_content_does_not_match_its_name_is_refused(tmp_path):
    files = image_layout(ARCH)
    layer_name = next(name for name, data in files.items() if data == b"layer bytes")
    files[layer_name] = b"other bytes"
    archive = tmp_path / "image.tar"
    archive.write_bytes(tar_bytes(layout_members(files)))
    (tmp_path / "dest").mkdir()
    with pytest.raises(ArchiveError, match="whose content hashes differently"):
        unpack_oci_archive(archive, tmp_path / "dest")


def test_a_name_given_twice_is_refused(tmp_path):
    files = image_layout(ARCH)
    members = layout_members(files) + [Member("index.json", data=b'{"manifests": []}')]
    archive = tmp_path / "image.tar"
    archive.write_bytes(tar_bytes(members))
    (tmp_path / "dest").mkdir()
    with pytest.raises(ArchiveError, match="holds 'index.json' twice"):
        unpack_oci_archive(archive, tmp_path / "dest")


def test_a_compressed_archive_is_refused_so_nothing_can_expand(tmp_path):
    archive = tmp_path / "image.tar.gz"
    archive.write_bytes(tar_bytes(layout_members(image_layout(ARCH)), "gz"))
    (tmp_path / "dest").mkdir()
    with pytest.raises(ArchiveError, match="is not an OCI archive \\(it is not a tar file\\)"):
        unpack_oci_archive(archive, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def test_a_truncated_archive_is_one_sentence(tmp_path):
    data = tar_bytes(layout_members(image_layout(ARCH)))
    archive = tmp_path / "image.tar"
    archive.write_bytes(data[: data.index(b"layer bytes") + 5])  # inside the last blob
    (tmp_path / "dest").mkdir()
    with pytest.raises(ArchiveError, match="cannot be read as an OCI archive") as refused:
        unpack_oci_archive(archive, tmp_path / "dest")
    assert "\n" not in str(refused.value)


def test_an_archive_written_by_skopeo_opens(cache_root, world):
    tmp_path, _ = world
    skopeo = require("skopeo")
    for name, data in image_layout(ARCH).items():
        (tmp_path / "layout" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "layout" / name).write_bytes(data)
    archive = tmp_path / "skopeo.tar"
    subprocess.run([skopeo, "copy", "--quiet", f"oci:{tmp_path / 'layout'}:v1", f"oci-archive:{archive}:v1"],
                   check=True, capture_output=True)
    image = find_image(f"oci-archive:{archive}", Layout(tmp_path / "store"), gpu=False, cache_root=cache_root)
    assert image.config["architecture"] == ARCH


@pytest.mark.parametrize("docker", [False, True])
def test_archives_cogbuild_writes_open(cache_root, world, docker):
    tmp_path, _ = world
    layout = Layout(tmp_path / "layout").init()
    for name, data in image_layout(ARCH).items():
        if name.startswith("blobs/"):
            layout.write_blob(data)
    index = json.loads(image_layout(ARCH)["index.json"])
    top = Descriptor.from_json(index["manifests"][0])
    archive = tmp_path / "out.tar"
    write_archive(layout, top, "model:v1", archive, docker=docker)
    image = find_image(f"oci-archive:{archive}", Layout(tmp_path / "store"), gpu=False, cache_root=cache_root)
    assert image.manifest.digest == top.digest
