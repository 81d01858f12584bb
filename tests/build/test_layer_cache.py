"""The layer cache: a composed layer is found again by its inputs; a damaged record or blob is a miss."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cogbuild.artifacts import Artifact
from cogbuild.build import LayerCache, compose_layer, largest_inputs_first
from cogbuild.layers.tarball import Compression
from cogbuild.layers.tree import Tree
from cogbuild.plan import LayerSpec
from cogbuild.registry.layout import Layout


def hello_spec(composed: list[str]) -> LayerSpec:
    def compose() -> Tree:
        composed.append("hello")
        tree = Tree()
        tree.add_file("app/hello.txt", b"hello\n" * 1000)
        return tree

    return LayerSpec("hello files", "code/sha256:" + "ab" * 32, compose)  # keys may hold any character


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Layout, Path, LayerSpec, list[str]]:
    composed: list[str] = []
    return Layout(tmp_path / "store").init(), tmp_path / "cache", hello_spec(composed), composed


def test_a_composed_layer_is_found_again_by_a_later_build(setup):
    layout, root, spec, composed = setup
    assert LayerCache(layout, Compression(), 0, root).get(spec) is None
    layer = compose_layer(spec, layout, LayerCache(layout, Compression(), 0, root))
    assert LayerCache(layout, Compression(), 0, root).get(spec) == layer
    assert composed == ["hello"]
    # How the bytes are compressed and stamped is part of the key.
    assert LayerCache(layout, Compression(), 1, root).get(spec) is None
    assert LayerCache(layout, Compression("zstd", 3), 0, root).get(spec) is None


def test_a_layer_blob_changed_on_disk_is_hashed_again_and_is_a_miss(setup):
    layout, root, spec, _ = setup
    layer = compose_layer(spec, layout, LayerCache(layout, Compression(), 0, root))
    blob = layout.blob_path(layer.descriptor.digest)
    data = blob.read_bytes()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, other bytes
    assert LayerCache(layout, Compression(), 0, root).get(spec) is None


def test_a_touched_but_intact_blob_is_hashed_again_and_still_a_hit(setup):
    layout, root, spec, _ = setup
    layer = compose_layer(spec, layout, LayerCache(layout, Compression(), 0, root))
    blob = layout.blob_path(layer.descriptor.digest)
    st = blob.stat()
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert LayerCache(layout, Compression(), 0, root).get(spec) == layer


@pytest.mark.parametrize("damage", [b"", b"not json", b"[]", b'{"mediaType": "x"}'])
def test_a_damaged_record_is_removed_and_the_layer_composed_again(setup, damage):
    layout, root, spec, composed = setup
    cache = LayerCache(layout, Compression(), 0, root)
    layer = compose_layer(spec, layout, cache)
    (record,) = cache.records.blobs.iterdir()
    record.write_bytes(damage)
    assert cache.get(spec) is None and not record.exists()
    assert compose_layer(spec, layout, cache) == layer
    assert cache.get(spec) == layer and composed == ["hello", "hello"]


def test_the_layer_with_the_most_input_is_composed_first():
    def spec(name: str, *sizes: int) -> LayerSpec:
        inputs = [Artifact("wheel", f"{name}{i}", "1", f"{name}{i}.whl", "https://x/", "0" * 64, size)
                  for i, size in enumerate(sizes)]
        return LayerSpec(name, name, Tree, inputs)

    specs = [spec("os", 30, 40), spec("code"), spec("torch", 700), spec("deps", 50, 60)]
    assert [s.comment for s in largest_inputs_first(specs)] == ["torch", "deps", "os", "code"]
