"""What a typed image name means (images.parse_source / parse_destination), the same for every command,
and the one archive writer: deterministic, and a docker-archive holding the manifest `run` would pick."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from cogbuild.cli import cli
from cogbuild.commands.build import write_output
from cogbuild.images import host_platform, parse_destination, parse_source
from cogbuild.registry.archive import write_archive
from cogbuild.registry.errors import OCIError
from cogbuild.registry.layout import Layout
from synthetic_images import write_image, write_index

HERE = host_platform().split("/")[1]
OTHER = "arm64" if HERE == "amd64" else "amd64"


@pytest.fixture
def two_platforms(tmp_path) -> tuple[Layout, dict[str, str]]:
    """A layout tagged v1: an index of this host's image and another platform's (listed first)."""
    layout = Layout(tmp_path / "layout").init()
    other = write_image(layout, [{"f": b"other"}], arch=OTHER)
    here = write_image(layout, [{"f": b"here"}], arch=HERE)
    top = write_index(layout, [other, here])
    layout.tag("v1", top)
    return layout, {"top": top.digest, "here": here.digest, "other": other.digest}


def test_sources_are_read_the_same_way_everywhere(two_platforms, tmp_path):
    layout, _ = two_platforms
    root = layout.root
    (tmp_path / "image.tar").write_bytes(b"")
    cases = {
        str(root): ("layout", root, None),
        f"{root}:v1": ("layout", root, "v1"),
        f"oci:{root}:model:v2": ("layout", root, "model:v2"),
        f"oci-archive:{tmp_path / 'image.tar'}": ("archive", tmp_path / "image.tar", None),
        f"oci-archive:{tmp_path / 'image.tar'}:v1": ("archive", tmp_path / "image.tar", "v1"),
        f"docker-archive:{tmp_path / 'image.tar'}:v1": ("archive", tmp_path / "image.tar", "v1"),
        "hello:latest": ("name", None, None),
        "127.0.0.1:5000/ns/hello:v1": ("name", None, None),
    }
    for text, (kind, path, tag) in cases.items():
        source = parse_source(text)
        assert (source.kind, source.path, source.tag) == (kind, path, tag), text


def test_destinations(tmp_path):
    assert parse_destination(str(tmp_path / "out")) == parse_destination(f"oci:{tmp_path / 'out'}")
    assert parse_destination(f"oci:{tmp_path / 'out'}").kind == "layout"
    assert parse_destination("oci-archive:x.tar").kind == "oci-archive"
    assert parse_destination("docker-archive:x.tar").path == Path("x.tar")


def test_the_oci_archive_is_the_same_bytes_every_time(two_platforms, tmp_path):
    layout, digests = two_platforms
    first, again = tmp_path / "a.tar", tmp_path / "b.tar"
    write_archive(layout, layout.resolve("v1"), "model:v1", first)
    write_archive(layout, layout.resolve("v1"), "model:v1", again)
    assert first.read_bytes() == again.read_bytes()
    with tarfile.open(first) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname) for m in members} == {(0, 0, 0, "")}
    assert f"blobs/sha256/{digests['other'][7:]}" in {m.name for m in members}  # every platform is kept


def test_a_docker_archive_holds_this_hosts_platform_like_run(two_platforms, tmp_path):
    layout, digests = two_platforms
    archive = tmp_path / "docker.tar"
    write_output(layout, f"docker-archive:{archive}", "model:v1", layout.resolve("v1"))
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
        names = {m.name for m in tar.getmembers()}
    assert [m["digest"] for m in index["manifests"]] == [digests["here"]]
    assert f"blobs/sha256/{digests['other'][7:]}" not in names
    write_output(layout, f"docker-archive:{archive}", "model:v1", layout.resolve("v1"), [f"linux/{OTHER}"])
    with tarfile.open(archive) as tar:
        assert json.load(tar.extractfile("index.json"))["manifests"][0]["digest"] == digests["other"]


def test_a_docker_archive_for_a_platform_the_image_lacks_is_one_sentence(two_platforms, tmp_path, monkeypatch):
    layout, _ = two_platforms
    monkeypatch.setattr("cogbuild.commands.build.host_platform", lambda: "linux/s390x")
    with pytest.raises(OCIError, match=r"cannot write a docker-archive for linux/s390x: the image has no "
                                        r"linux/s390x image \(it has linux/amd64, linux/arm64\)"):
        write_output(layout, f"docker-archive:{tmp_path / 'x.tar'}", "model:v1", layout.resolve("v1"))
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.parametrize("form", ["oci-archive:{archive}", "oci-archive:{archive}:model:v1", "oci:{layout}",
                                  "oci:{layout}:v1", "{layout}:v1"])
def test_show_takes_every_local_form(two_platforms, tmp_path, form):
    layout, digests = two_platforms
    archive = tmp_path / "image.tar"
    write_archive(layout, layout.resolve("v1"), "model:v1", archive)
    target = form.format(archive=archive, layout=layout.root)
    shown = CliRunner().invoke(cli, ["show", target, "--json"])
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.output)
    assert summary["digest"] == digests["top"]
    assert sorted(image["platform"] for image in summary["images"]) == ["linux/amd64", "linux/arm64"]


def test_show_of_a_missing_archive_is_one_sentence(tmp_path):
    shown = CliRunner().invoke(cli, ["show", f"oci-archive:{tmp_path / 'none.tar'}"])
    assert shown.exit_code == 2
    assert shown.output == f"error: there is no OCI archive {tmp_path / 'none.tar'}\n"
