"""Layers gzip'd by libdeflate, one gzip member per 1 MiB block: the same bytes however many threads ran,
bytes pinned by a golden digest (an upgrade of the `deflate` wheel shows up here), read by every reader."""

from __future__ import annotations

import gzip
import hashlib
import io
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor

import pytest

from cogbuild.layers import tarball
from cogbuild.layers.tarball import BLOCK, Compression, layer_bytes
from cogbuild.layers.tree import Tree
from components import require


def _stream(seed: str, size: int) -> bytes:
    """Incompressible bytes that are the same on any machine (a sha256 chain, not a seeded PRNG)."""
    out, block = bytearray(), seed.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def golden_tree() -> Tree:
    """About 4 MiB of tar: source-like text, incompressible bytes, an empty file; several gzip members."""
    tree = Tree()
    for i in range(80):
        tree.add_file(f"pkg/mod{i:02}.py", (f"def f{i}(x):\n    return x * {i} + {i * i}\n" * 900).encode())
    tree.add_file("pkg/lib.so", _stream("lib.so", 1_500_000), 0o755)
    tree.add_file("pkg/empty", b"")
    tree.add_symlink("pkg/link", "lib.so")
    return tree


def _with_pool(monkeypatch, workers: int) -> None:
    monkeypatch.setattr(tarball, "_POOL", ThreadPoolExecutor(max_workers=workers))
    monkeypatch.setattr(tarball, "_WORKERS", workers)


def test_the_bytes_do_not_depend_on_the_threads(monkeypatch):
    runs = []
    for workers in (1, 4, 1, 4):
        _with_pool(monkeypatch, workers)
        runs.append(layer_bytes(golden_tree(), Compression("gzip"), 0))
    assert all(run == runs[0] for run in runs)
    assert runs[0][1].uncompressed_size > 3 * BLOCK  # several members, so the order of blocks matters


def test_golden_digest_of_a_fixed_layer():
    # Changes only when libdeflate's output changes (a new `deflate` pin) or the tar writer's does: then
    # every image's layer digests change once, which the commit and the docs must say.
    blob, digests = layer_bytes(golden_tree(), Compression.parse("gzip"), 0)
    assert digests.diff_id == "sha256:a9185ff7023d99cbb7c36cbd58b32bcbefb6299476a9e84f54a821ac996b78f9"
    assert digests.digest == "sha256:48dc61cc4b508d851f818309c291101c39d0e0c42665afc8ad9b12786434f127"
    assert Compression.parse("gzip").identity == "gzip-4-members1048576/libdeflate(deflate-0.9.0)"


def test_the_members_read_back_with_pythons_gzip_tarfile_and_gnu_gzip(tmp_path):
    blob, digests = layer_bytes(golden_tree(), Compression("gzip"), 0)
    assert blob.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") >= 4  # one member per block, no timestamp
    tar = gzip.decompress(blob)
    assert "sha256:" + hashlib.sha256(tar).hexdigest() == digests.diff_id
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as archive:  # GzipFile: every member
        assert archive.extractfile("pkg/lib.so").read() == _stream("lib.so", 1_500_000)
    (tmp_path / "layer.tar.gz").write_bytes(blob)
    gnu_gzip = require("gzip")
    subprocess.run([gnu_gzip, "-t", str(tmp_path / "layer.tar.gz")], check=True)
    unpacked = subprocess.run([gnu_gzip, "-dc", str(tmp_path / "layer.tar.gz")], check=True, capture_output=True)
    assert unpacked.stdout == tar


def test_a_tar_of_whole_blocks_ends_without_an_empty_member():
    data = _stream("blocks", 2 * BLOCK)
    compressor = tarball.MemberGzip(4)
    blob = compressor.compress(data) + compressor.flush()
    assert gzip.decompress(blob) == data and blob.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") == 2


@pytest.mark.parametrize("text, expected", [
    ("gzip", Compression("gzip", 4)),
    ("gzip:9", Compression("gzip", 9)),
    ("gzip-zlib", Compression("gzip-zlib", 6)),
    ("gzip-zlib:1", Compression("gzip-zlib", 1)),
])
def test_compression_names_and_their_identities_round_trip(text, expected):
    assert Compression.parse(text) == expected
    assert Compression.from_identity(expected.identity) == expected


def test_the_zlib_engine_keeps_its_identity_and_one_member():
    old = Compression.parse("gzip-zlib:6")
    assert old.identity.startswith("gzip-6-blocks1048576/zlib-")  # what images built before libdeflate record
    blob, digests = layer_bytes(golden_tree(), old, 0)
    assert blob[:10] == tarball.ParallelGzip.HEADER
    assert gzip.decompress(blob) == layer_bytes(golden_tree(), Compression("none", 0), 0)[0]
    assert digests.diff_id == layer_bytes(golden_tree(), Compression("gzip"), 0)[1].diff_id


def test_an_unknown_compression_is_one_sentence():
    with pytest.raises(ValueError, match=r"^unknown compression 'gzip-ng:4' \(use gzip, gzip-zlib, zstd or none"):
        Compression.parse("gzip-ng:4")
