"""Hostile inputs built byte by byte: tars with any member (links out, `..`, devices), .debs around them.

dpkg-deb and tarfile's own `add` refuse to make most of these, so the members are written from TarInfo
records directly; the .deb is an ar archive assembled here.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass

KINDS = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "hardlink": tarfile.LNKTYPE, "chardev": tarfile.CHRTYPE, "blockdev": tarfile.BLKTYPE,
         "fifo": tarfile.FIFOTYPE}


@dataclass(frozen=True)
class Member:
    name: str
    kind: str = "file"
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644


def tar_bytes(members: list[Member], compression: str = "") -> bytes:
    """A tar (gz/xz/bz2 when asked) holding exactly `members`, in order, names as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compression}", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type, info.linkname, info.mode = KINDS[member.kind], member.linkname, member.mode
            if member.kind == "file":
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def ar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """A System V ar archive (the container of a .deb)."""
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


CONTROL = b"Package: crafted\nVersion: 1.0\nArchitecture: amd64\nDescription: hostile test input\n"


def deb_bytes(data_members: list[Member], control: bytes = CONTROL) -> bytes:
    control_tar = tar_bytes([Member("./control", data=control)], "gz")
    return ar_bytes([("debian-binary", b"2.0\n"), ("control.tar.gz", control_tar),
                     ("data.tar.gz", tar_bytes(data_members, "gz"))])


def _digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest_bytes(config: bytes, layer: bytes) -> bytes:
    """An OCI image manifest of `config` and one uncompressed `layer`."""
    import json

    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer),
                    "size": len(layer)}]}).encode()


def image_layout(arch: str = "amd64", tag: str = "v1", layer: bytes = b"layer bytes") -> dict[str, bytes]:
    """A small valid OCI layout, name -> bytes: one manifest (one layer) named `tag` in index.json."""
    import json

    config = json.dumps({"os": "linux", "architecture": arch, "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = _manifest_bytes(config, layer)
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(manifest),
        "size": len(manifest), "platform": {"os": "linux", "architecture": arch},
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for blob in (config, manifest, layer):
        files["blobs/sha256/" + _digest(blob)[7:]] = blob
    return files


def layout_members(files: dict[str, bytes]) -> list[Member]:
    return [Member(name, data=data) for name, data in files.items()]


MODEL_SCHEMA = {"openapi": "3.0.2", "components": {"schemas": {"Input": {
    "type": "object", "required": ["text"],
    "properties": {"text": {"type": "string", "x-order": 0}, "count": {"type": "integer", "x-order": 1}}}}}}
SERVER_ENTRYPOINT = ["/opt/cogbuild/server/bin/python", "-I", "-u", "-m", "cog.server.http"]


def model_image_layout(variants: tuple[str, ...] = ("cpu",), tag: str = "v1", user: str = "1000:1000",
                       env: tuple[str, ...] = (), entrypoint: list[str] = SERVER_ENTRYPOINT) -> dict[str, bytes]:
    """An OCI layout shaped like a model image cogbuild builds, name -> bytes: an index of one linux/amd64
    manifest per variant (annotated run.cog.variant), each config with the model's user, environment,
    entrypoint and schema label, and one layer."""
    import json

    layer = b"model layer"
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "blobs/sha256/" + _digest(layer)[7:]: layer}
    entries = []
    for variant in variants:
        gpu_env = ("NVIDIA_VISIBLE_DEVICES=all",) if variant == "gpu" else ()
        config = json.dumps({
            "os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
            "config": {"User": user, "Env": ["PATH=/usr/bin", *gpu_env, *env], "Entrypoint": entrypoint,
                       "WorkingDir": "/src", "ExposedPorts": {"5000/tcp": {}},
                       "Labels": {"run.cog.openapi_schema": json.dumps(MODEL_SCHEMA)}}}).encode()
        manifest = _manifest_bytes(config, layer)
        for blob in (config, manifest):
            files["blobs/sha256/" + _digest(blob)[7:]] = blob
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(manifest),
                        "size": len(manifest), "platform": {"os": "linux", "architecture": "amd64"},
                        "annotations": {"run.cog.variant": variant}})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": entries}).encode()
    files["blobs/sha256/" + _digest(index)[7:]] = index
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": _digest(index), "size": len(index),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}).encode()
    return files
