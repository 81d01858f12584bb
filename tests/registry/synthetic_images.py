"""Small but real OCI images written straight into a Layout (tarfile + gzip, canonical JSON)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile

from cogbuild.layers.descriptor import (OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Descriptor,
                                        canonical_json)
from cogbuild.registry.layout import Layout


def layer_bytes(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A gzip tar layer and its diff_id; entries sorted, mtime 0, root-owned."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(files[name]))
    tar_data = raw.getvalue()
    return gzip.compress(tar_data, mtime=0), "sha256:" + hashlib.sha256(tar_data).hexdigest()


def random_layer_files(size: int, seed: int = 0) -> dict[str, bytes]:
    """Incompressible content, so a layer of `size` bytes really is about that big."""
    return {f"data/blob-{seed}.bin": os.urandom(size)}


def write_image(layout: Layout, layers: list[dict[str, bytes]], *, arch: str = "amd64",
                labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Descriptor:
    """Write layers, config and manifest; return the manifest's descriptor (with its platform)."""
    layout.init()
    layer_descs, diff_ids = [], []
    for files in layers:
        data, diff_id = layer_bytes(files)
        layout.write_blob(data)
        layer_descs.append(Descriptor.of(OCI_LAYER_GZIP, data).to_json())
        diff_ids.append(diff_id)
    config = canonical_json({
        "architecture": arch, "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Entrypoint": ["/bin/sh"], "WorkingDir": "/src", "Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    layout.write_blob(config)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": Descriptor.of(OCI_CONFIG, config).to_json(), "layers": layer_descs,
        **({"annotations": annotations} if annotations else {}),
    })
    layout.write_blob(manifest)
    return Descriptor.of(OCI_MANIFEST, manifest, platform={"architecture": arch, "os": "linux"})


def write_index(layout: Layout, manifests: list[Descriptor]) -> Descriptor:
    index = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": [m.to_json() for m in manifests]})
    layout.write_blob(index)
    return Descriptor.of(OCI_INDEX, index)
