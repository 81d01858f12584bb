"""What a build.run step changed, as a layer: real files on disk, real tar bytes, whiteouts applied back."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from cogbuild.layers.rundiff import diff_tree, scan
from cogbuild.layers.tarball import Compression, layer_bytes
from cogbuild.sandbox import apply_layer

NONE = Compression("none", 0)


def make_root(root: Path) -> Path:
    (root / "etc" / "conf.d").mkdir(parents=True)
    (root / "etc" / "keep").write_text("same")
    (root / "etc" / "change").write_text("old")
    (root / "etc" / "remove").write_text("bye")
    (root / "etc" / "conf.d" / "a").write_text("a")
    (root / "etc" / "conf.d" / "b").write_text("b")
    (root / "usr" / "share").mkdir(parents=True)
    (root / "usr" / "share" / "swap").write_text("file that becomes a directory")
    (root / "bin").symlink_to("usr/bin")
    return root


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_changes_become_entries_and_deletions_whiteouts(tmp_path):
    root = make_root(tmp_path / "root")
    before = scan(root)
    (root / "etc" / "change").write_text("new")
    (root / "etc" / "remove").unlink()
    for name in ("a", "b"):
        (root / "etc" / "conf.d" / name).unlink()
    (root / "etc" / "conf.d").rmdir()
    (root / "usr" / "share" / "swap").unlink()
    (root / "usr" / "share" / "swap").mkdir()
    (root / "opt" / "new").mkdir(parents=True)
    (root / "opt" / "new" / "tool").write_text("#!/bin/sh\n")
    os.chmod(root / "opt" / "new" / "tool", 0o755)
    os.chmod(root / "etc" / "keep", 0o600)  # metadata only

    data, _ = layer_bytes(diff_tree(root, before, scan(root)), NONE, mtime=0)
    entries = members(data)
    assert sorted(entries) == ["etc", "etc/.wh.conf.d", "etc/.wh.remove", "etc/change", "etc/keep", "opt",
                               "opt/new", "opt/new/tool", "usr", "usr/share", "usr/share/swap"]
    assert entries["opt/new/tool"].mode == 0o755 and entries["etc/keep"].mode == 0o600
    assert entries["usr/share/swap"].isdir()
    assert all(m.mtime == 0 and m.uname == "" for m in entries.values())


def test_nothing_changed_is_an_empty_layer_and_the_bytes_are_stable(tmp_path):
    root = make_root(tmp_path / "root")
    before = scan(root)
    assert len(diff_tree(root, before, scan(root))) == 0
    (root / "etc" / "change").write_text("new")
    first = layer_bytes(diff_tree(root, before, scan(root)), mtime=0)
    os.utime(root / "etc" / "change", (1_700_000_000, 1_700_000_000))
    assert layer_bytes(diff_tree(root, before, scan(root)), mtime=0) == first


def test_applying_the_layer_to_a_copy_of_before_gives_after(tmp_path):
    root = make_root(tmp_path / "root")
    copy = make_root(tmp_path / "copy")
    before = scan(root)
    (root / "etc" / "remove").unlink()
    (root / "etc" / "change").write_text("new")
    for name in ("a", "b"):
        (root / "etc" / "conf.d" / name).unlink()
    (root / "etc" / "conf.d").rmdir()
    data, _ = layer_bytes(diff_tree(root, before, scan(root)), NONE, mtime=0)
    apply_layer(copy, io.BytesIO(data))
    assert not (copy / "etc" / "remove").exists() and not (copy / "etc" / "conf.d").exists()
    assert (copy / "etc" / "change").read_text() == "new"
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*")) == \
        sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_an_opaque_whiteout_empties_the_directory(tmp_path):
    root = make_root(tmp_path / "root")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.addfile(tarfile.TarInfo("etc/conf.d/.wh..wh..opq"))
    apply_layer(root, io.BytesIO(buf.getvalue()))
    assert (root / "etc" / "conf.d").is_dir() and not list((root / "etc" / "conf.d").iterdir())


def test_a_layer_cannot_write_through_a_symlink_out_of_the_root(tmp_path):
    root = make_root(tmp_path / "root")
    (root / "escape").symlink_to(tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("escape/pwned")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(Exception, match="leads outside the image"):
        apply_layer(root, io.BytesIO(buf.getvalue()))
    assert not (tmp_path / "pwned").exists()
