"""Small OCI images written straight into a layout: a manifest per platform and variant, and indexes of them."""

from __future__ import annotations

from cogbuild.layers.descriptor import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor, canonical_json
from cogbuild.layers.imagegraph import VARIANT_ANNOTATION
from cogbuild.registry.layout import Layout


def write_image(layout: Layout, platform: str, variant: str, labels: dict[str, str] | None = None,
                annotations: dict[str, str] | None = None, layer: bytes | None = None,
                with_platform: bool = True) -> Descriptor:
    """A manifest for `platform` (os/arch) named as `variant` in its index entry; `layer` adds one blob layer,
    `with_platform=False` leaves the platform to the config, as some writers do."""
    os_name, arch = platform.split("/")
    config = canonical_json({"os": os_name, "architecture": arch, "config": {"Labels": labels or {}},
                             "rootfs": {"type": "layers", "diff_ids": []}})
    layers = [Descriptor.of(OCI_LAYER_GZIP, layer)] if layer is not None else []
    manifest = canonical_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [d.to_json() for d in layers],
                               "config": Descriptor.of(OCI_CONFIG, config).to_json(),
                               **({"annotations": annotations} if annotations else {})})
    for data in (config, manifest, *([layer] if layer is not None else [])):
        layout.write_blob(data)
    return Descriptor.of(OCI_MANIFEST, manifest, annotations={VARIANT_ANNOTATION: variant},
                         platform={"os": os_name, "architecture": arch} if with_platform else None)


def write_index(layout: Layout, children: list[Descriptor]) -> Descriptor:
    data = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [c.to_json() for c in children]})
    layout.write_blob(data)
    return Descriptor.of(OCI_INDEX, data)
