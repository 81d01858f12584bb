"""Export an image from the store: a directory layout, an oci-archive, or a docker-archive.

All three hold an OCI image layout with only the blobs of the exported image. The docker-archive also
carries `manifest.json` in `docker save` form (layer paths pointing into blobs/), which `docker load` and
`podman load` read; it holds one platform's image, since that format has no index.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

from cogbuild.layers.descriptor import OCI_INDEX, Descriptor

from .layout import REF_ANNOTATION, Layout, LayoutError

INDEX_TYPES = (OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json")


def image_blobs(layout: Layout, desc: Descriptor) -> list[Descriptor]:
    """Every descriptor reachable from `desc` (itself included), children after parents."""
    found: dict[str, Descriptor] = {}

    def visit(node: Descriptor) -> None:
        if node.digest in found:
            return
        found[node.digest] = node
        if node.media_type in INDEX_TYPES:
            for child in layout.read_json(node.digest).get("manifests", []):
                visit(Descriptor.from_json(child))
        elif node.media_type.endswith("manifest.v1+json") or node.media_type.endswith("manifest.v2+json"):
            doc = layout.read_json(node.digest)
            for blob in [doc["config"], *doc.get("layers", [])]:
                visit(Descriptor.from_json(blob))

    visit(desc)
    return list(found.values())


def export_layout(layout: Layout, desc: Descriptor, name: str, dest: Path) -> None:
    """Copy the image into a fresh (or existing) OCI layout directory at `dest`, tagged `name`."""
    target = Layout(dest).init()
    for blob in image_blobs(layout, desc):
        if not target.has_blob(blob.digest):
            tmp_fd, tmp = target.tmp_file()
            os.close(tmp_fd)
            shutil.copyfile(layout.blob_path(blob.digest), tmp)
            target.add_blob_file(Path(tmp), blob.digest)
    target.tag(name, desc)


def _single_manifest(layout: Layout, desc: Descriptor) -> Descriptor:
    if desc.media_type not in INDEX_TYPES:
        return desc
    children = [Descriptor.from_json(c) for c in layout.read_json(desc.digest).get("manifests", [])]
    for child in children:
        if (child.platform or {}).get("architecture") == "amd64":
            return _single_manifest(layout, child)
    if not children:
        raise LayoutError(f"index {desc.digest} lists no images")
    return _single_manifest(layout, children[0])


def write_archive(layout: Layout, desc: Descriptor, name: str, dest: Path, docker: bool = False) -> None:
    """A deterministic tar of the image's layout (sorted, mtime 0, root-owned), written atomically."""
    if docker:
        desc = _single_manifest(layout, desc)
    blobs = image_blobs(layout, desc)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [Descriptor(desc.media_type, desc.digest, desc.size,
                                      {**desc.annotations, REF_ANNOTATION: name}, desc.platform).to_json()]}
    small: dict[str, bytes] = {
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
        "index.json": json.dumps(index, sort_keys=True).encode(),
    }
    if docker:
        manifest = layout.read_json(desc.digest)
        small["manifest.json"] = json.dumps([{
            "Config": _blob_name(manifest["config"]["digest"]),
            "RepoTags": [name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"],
            "Layers": [_blob_name(layer["digest"]) for layer in manifest["layers"]],
        }]).encode()
    buf_path = dest.with_name(f".{dest.name}.partial")
    with open(buf_path, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = sorted([(n, None) for n in small] + [(_blob_name(b.digest), b) for b in blobs]
                         + [("blobs", "dir"), ("blobs/sha256", "dir")], key=lambda e: e[0])
        for name_in_tar, what in entries:
            info = tarfile.TarInfo(name_in_tar)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if what == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif what is None:
                info.mode, info.size = 0o644, len(small[name_in_tar])
                tar.addfile(info, io.BytesIO(small[name_in_tar]))
            else:
                info.mode, info.size = 0o644, what.size
                with layout.open_blob(what.digest) as f:
                    tar.addfile(info, f)
    os.replace(buf_path, dest)


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.split(":", 1)[1]

