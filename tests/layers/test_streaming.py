"""A wheel installed from a file, or a .deb unpacked to a spill directory, is read again when the layer is
written, never held: same bytes, less memory."""

from __future__ import annotations

import os
import random
import tracemalloc
import zipfile

import pytest

from cogbuild.layers.deb import unpack_deb
from cogbuild.layers.tarball import Compression, layer_bytes, write_layer
from cogbuild.layers.tree import SpillDir, Tree
from cogbuild.layers.wheel import InflatedMember, PythonPaths, install_wheel
from fixtures_build import make_deb, make_wheel

FILES = {"big_pkg/__init__.py": b"VALUE = 1\n", "big_pkg/blob.bin": os.urandom(3 << 20),
         "big_pkg/text.txt": b"line\n" * 50_000}


def installed(wheel) -> Tree:
    tree = Tree()
    install_wheel(tree, wheel, "big_pkg-1.0-py3-none-any.whl", PythonPaths("3.11"))
    return tree


@pytest.fixture
def wheel_file(tmp_path):
    name, data = make_wheel("big_pkg", files=FILES, console_scripts={"big": "big_pkg:main"}, deflated=True)
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_wheel_file_gives_the_same_layer_bytes_as_the_wheel_in_memory(wheel_file):
    for compression in (Compression("gzip"), Compression("zstd", 3), Compression("none", 0)):
        assert layer_bytes(installed(wheel_file), compression, 0) == \
            layer_bytes(installed(wheel_file.read_bytes()), compression, 0)


def test_members_of_a_wheel_file_are_not_held_in_memory(wheel_file):
    tree = installed(wheel_file)
    site = "usr/local/lib/python3.11/dist-packages"
    blob = tree.get(f"{site}/big_pkg/blob.bin")
    assert blob.data is None and blob.size == len(FILES["big_pkg/blob.bin"])
    assert blob.read() == FILES["big_pkg/blob.bin"]
    # What installer writes itself (RECORD, console scripts) is small and made here: held as bytes.
    assert tree.get(f"{site}/big_pkg-1.0.dist-info/RECORD").data is not None
    assert tree.get("usr/local/bin/big").data is not None


def test_a_wheel_file_changed_before_the_layer_is_written_is_an_error(wheel_file, tmp_path):
    tree = installed(wheel_file)
    with zipfile.ZipFile(wheel_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["big_pkg/blob.bin"] = b"shorter now"
    with zipfile.ZipFile(wheel_file, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(OSError, match="unexpected end of data"):
        layer_bytes(tree, Compression("none", 0), 0)


BIG = 256 << 20  # far more than what composing a layer may hold at once
HELD_AT_MOST = 16 << 20  # a few compression blocks in flight and the tar writer's buffers


def peak_python_memory_while_written(tree: Tree) -> int:
    """The most memory Python allocated (any thread) while `tree` was written as a gzip layer to nowhere."""
    tracemalloc.start()
    try:
        with open(os.devnull, "wb") as sink:
            write_layer(tree, sink, Compression("gzip"), 0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_layer_of_a_large_host_file_is_written_without_holding_it(tmp_path):
    sparse = tmp_path / "weights.bin"
    with open(sparse, "wb") as f:
        f.truncate(BIG)  # sparse: no disk used, but read as BIG bytes of zeros
    tree = Tree()
    tree.add_host_file("src/weights.bin", sparse, 0o644, BIG)
    assert peak_python_memory_while_written(tree) < HELD_AT_MOST


def test_a_large_member_of_a_wheel_file_is_installed_and_written_without_holding_it(tmp_path):
    name, data = make_wheel("big_pkg", files={"big_pkg/__init__.py": b"", "big_pkg/model.bin": bytes(BIG)})
    (tmp_path / name).write_bytes(data)
    del data
    tracemalloc.start()
    try:
        tree = Tree()
        install_wheel(tree, tmp_path / name, name, PythonPaths("3.11"))
        installing = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert installing < HELD_AT_MOST
    assert peak_python_memory_while_written(tree) < HELD_AT_MOST


def unpacked_deb(tmp_path, spill=None) -> Tree:
    big = random.Random(15).randbytes(SpillDir.SMALL * 4)  # the same in every deb built here
    deb = make_deb(tmp_path, "spilled", files={"/usr/lib/libbig.so": big, "/etc/small.conf": b"x = 1\n"},
                   hardlinks={"/usr/lib/libbig-again.so": "/usr/lib/libbig.so"})
    tree = Tree()
    unpack_deb(deb, tree, "spilled.deb", spill)
    return tree


def test_a_deb_unpacked_to_a_spill_directory_gives_the_same_layer_bytes(tmp_path):
    spilled = unpacked_deb(tmp_path / "a", SpillDir(tmp_path))
    in_memory = unpacked_deb(tmp_path / "b")
    assert layer_bytes(spilled, Compression("gzip"), 0) == layer_bytes(in_memory, Compression("gzip"), 0)


def test_a_spilled_deb_holds_only_its_small_files_in_memory(tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    tree = unpacked_deb(tmp_path, SpillDir(spill))
    big, again, small = (tree.get(p) for p in ("usr/lib/libbig.so", "usr/lib/libbig-again.so", "etc/small.conf"))
    assert big.data is None and big.source.parent == spill and big.size == SpillDir.SMALL * 4
    assert again.data is None and again.read() == big.read()  # a hardlink is a file of its own
    assert small.data == b"x = 1\n" and small.source is None
    assert len(list(spill.iterdir())) == 2


def test_a_spilled_file_changed_before_the_layer_is_written_is_an_error(tmp_path):
    spill = tmp_path / "spill"
    spill.mkdir()
    tree = unpacked_deb(tmp_path, SpillDir(spill))
    tree.get("usr/lib/libbig.so").source.write_bytes(b"truncated")
    with pytest.raises(ValueError, match="changed size"):
        layer_bytes(tree, Compression("none", 0), 0)


def member_bytes(path, name: str, piece: int) -> bytes:
    info = zipfile.ZipFile(path).getinfo(name)
    with InflatedMember(path, info) as stream:
        pieces = iter(lambda: stream.read(piece), b"")
        return b"".join(pieces)


@pytest.mark.parametrize("piece", [1, 4096, 1 << 20, -1])
def test_a_deflated_member_is_inflated_to_zipfiles_bytes(wheel_file, piece):
    with zipfile.ZipFile(wheel_file) as archive:
        for name in ("big_pkg/blob.bin", "big_pkg/text.txt") if piece != 1 else ("big_pkg/__init__.py",):
            assert archive.getinfo(name).compress_type == zipfile.ZIP_DEFLATED
            assert member_bytes(wheel_file, name, piece) == archive.read(name)


def test_a_damaged_deflated_member_fails_like_zipfile(wheel_file, tmp_path):
    """A flipped byte is caught by the deflate stream or, as zipfile does, by the member's CRC-32."""
    info = zipfile.ZipFile(wheel_file).getinfo("big_pkg/text.txt")
    data = bytearray(wheel_file.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2] ^= 0x40
    damaged = tmp_path / "damaged.whl"
    damaged.write_bytes(bytes(data))
    with pytest.raises((zipfile.BadZipFile, Exception)) as zipfile_says:
        zipfile.ZipFile(damaged).read("big_pkg/text.txt")
    with pytest.raises(type(zipfile_says.value)):
        member_bytes(damaged, "big_pkg/text.txt", 1 << 20)


def test_a_deflated_member_cut_short_is_refused(wheel_file, tmp_path):
    info = zipfile.ZipFile(wheel_file).getinfo("big_pkg/blob.bin")
    short = tmp_path / "short.whl"
    short.write_bytes(wheel_file.read_bytes())
    cut = zipfile.ZipInfo(info.filename)
    cut.header_offset, cut.compress_size, cut.file_size, cut.CRC = \
        info.header_offset, info.compress_size // 2, info.file_size, info.CRC
    cut.compress_type = zipfile.ZIP_DEFLATED
    with pytest.raises(zipfile.BadZipFile, match="ends before"):
        with InflatedMember(short, cut) as stream:
            stream.read()
