"""The image graph (layers/imagegraph.py): one walk and one choice of manifest, over a real OCI layout."""

from __future__ import annotations

import pytest

from cogbuild.layers.descriptor import (OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, Descriptor, InvalidDescriptor,
                                        canonical_json)
from cogbuild.layers.imagegraph import MAX_DEPTH, NoSuchPlatform, image_manifests, select, variant_of, walk
from cogbuild.registry.layout import Layout
from oci_images import write_image
from oci_images import write_index as index


def manifest(layout: Layout, platform: str, variant: str, layer: bytes = b"shared layer",
             with_platform: bool = True) -> Descriptor:
    """Every image here has one layer, the same one unless a test names another."""
    return write_image(layout, platform, variant, layer=layer, with_platform=with_platform)


@pytest.fixture
def layout(tmp_path) -> Layout:
    return Layout(tmp_path / "layout").init()


def test_walk_visits_each_descriptor_once_children_before_parents(layout):
    cpu, gpu = manifest(layout, "linux/amd64", "cpu"), manifest(layout, "linux/amd64", "gpu", b"other layer")
    inner = index(layout, [gpu])
    top = index(layout, [cpu, inner])
    nodes = list(walk(layout, top))
    digests = [n.descriptor.digest for n in nodes]
    assert len(digests) == len(set(digests))
    assert digests[-1] == top.digest
    position = {d: i for i, d in enumerate(digests)}
    for node in nodes:
        if node.parent is not None:
            assert position[node.descriptor.digest] < position[node.parent.digest], node
    # the two manifests share their config (equal bytes): it is visited once, above
    assert {n.descriptor.media_type for n in nodes if n.document is None} == {OCI_CONFIG, OCI_LAYER_GZIP}
    assert [n.descriptor.digest for n in image_manifests(layout, top)] == [cpu.digest, gpu.digest]


def test_walk_refuses_a_document_whose_size_differs_from_its_descriptor(layout):
    real = manifest(layout, "linux/amd64", "cpu")
    lying = Descriptor(real.media_type, real.digest, real.size + 1)
    with pytest.raises(InvalidDescriptor, match="bytes, but its descriptor says"):
        list(walk(layout, index(layout, [lying])))


def test_walk_refuses_indexes_nested_too_deep(layout):
    top = manifest(layout, "linux/amd64", "cpu")
    for _ in range(MAX_DEPTH + 1):
        top = index(layout, [top])
    with pytest.raises(InvalidDescriptor, match="nested more than"):
        list(walk(layout, top))


def test_walk_names_the_malformed_document(layout):
    data = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"digest": "x"}]})
    layout.write_blob(data)
    bad = Descriptor.of(OCI_INDEX, data)
    with pytest.raises(InvalidDescriptor, match=f"{bad.digest} is malformed: a descriptor lacks"):
        list(walk(layout, bad))


def test_select_prefers_the_variant_then_cpu_on_the_exact_platform(layout):
    amd_cpu, amd_gpu = manifest(layout, "linux/amd64", "cpu"), manifest(layout, "linux/amd64", "gpu", b"g")
    arm_cpu = manifest(layout, "linux/arm64", "cpu", b"arm")
    top = index(layout, [arm_cpu, amd_cpu, amd_gpu])
    assert select(layout, top, "linux/amd64", "gpu").descriptor.digest == amd_gpu.digest
    assert select(layout, top, "linux/amd64", "cpu").descriptor.digest == amd_cpu.digest
    assert select(layout, top, "linux/arm64", "gpu").descriptor.digest == arm_cpu.digest  # no gpu: cpu
    with pytest.raises(NoSuchPlatform, match=r"has no linux/s390x image \(it has linux/amd64, linux/arm64\)"):
        select(layout, top, "linux/s390x")


def test_select_reads_the_platform_from_the_config_when_the_index_omits_it(layout):
    bare = manifest(layout, "linux/arm64", "gpu", with_platform=False)
    top = index(layout, [bare])
    chosen = select(layout, top, "linux/arm64", "gpu")
    assert chosen.descriptor.digest == bare.digest and variant_of(chosen) == "gpu"
    assert select(layout, bare, "linux/arm64").descriptor.digest == bare.digest  # a manifest selects itself
