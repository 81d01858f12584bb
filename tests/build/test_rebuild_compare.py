"""How `verify --rebuild` reads an image's build settings and names what differs (pure parts)."""

from __future__ import annotations

from cogbuild.build import COMPRESSION_ANNOTATION
from cogbuild.layers.tarball import Compression
from cogbuild.rebuild import _compression, _first_difference, _platforms, _variants


def _image(layers: list[str], *, digest: str = "m1", variant: str = "cpu", **annotations: str) -> dict:
    return {"platform": "linux/amd64", "variant": variant, "digest": digest, "annotations": annotations,
            "layers": [{"digest": d, "holds": f"holds {d}"} for d in layers]}


def test_compression_and_selection_come_from_the_image():
    gzip9 = {"images": [_image([], **{COMPRESSION_ANNOTATION: "gzip-9-blocks1048576/zlib-1.2.13"})]}
    zstd = {"images": [_image([], **{COMPRESSION_ANNOTATION: "zstd-3/zstandard-0.25.0"})]}
    assert _compression(gzip9) == Compression("gzip-zlib", 9)  # an image compressed before libdeflate
    libdeflate = Compression("gzip", 5)
    assert _compression({"images": [_image([], **{COMPRESSION_ANNOTATION: libdeflate.identity})]}) == libdeflate
    assert _compression(zstd) == Compression("zstd", 3)
    assert _compression({"images": [_image([], **{COMPRESSION_ANNOTATION: "none"})]}) == Compression("none", 0)
    assert _compression({"images": [_image([])]}) == Compression.parse("gzip")  # an image without the annotation
    both = {"images": [_image([], variant="cpu"), {**_image([], variant="gpu"), "platform": "linux/arm64"}]}
    assert _platforms(both) == ["linux/amd64", "linux/arm64"] and _variants(both) == ["cpu", "gpu"]


def test_the_first_differing_layer_is_named_with_what_it_holds():
    pushed = {"images": [_image(["a", "b", "c"])]}
    assert _first_difference(pushed, {"images": [_image(["a", "x", "c"], digest="m2")]}) == (
        "linux/amd64 cpu: layer 2 (holds b) differs: the image has b, the rebuild x")
    assert _first_difference(pushed, {"images": [_image(["a", "b"], digest="m2")]}) == (
        "linux/amd64 cpu: the image has 3 layers, the rebuild 2")
    assert "config or manifest differs" in _first_difference(pushed, {"images": [_image(["a", "b", "c"],
                                                                                         digest="m2")]})
    assert _first_difference(pushed, {"images": [_image(["a"], variant="gpu")]}) == \
        "the rebuild has no linux/amd64 cpu image"
