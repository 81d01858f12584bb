"""Export an image from the store: a directory layout, an oci-archive, or a docker-archive; read an archive.

All three hold an OCI image layout with only the blobs of the exported image. The docker-archive also
carries `manifest.json` in `docker save` form (layer paths pointing into blobs/), which `docker load` and
`podman load` read; it holds one platform's image, since that format has no index.

An archive from elsewhere is untrusted: `unpack_oci_archive` writes only the names a layout has, as
regular files it creates itself, and never asks tarfile to extract anything (its filters have had bypasses).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import IO

from cogbuild.layers.descriptor import (DIGEST_FORMS, INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX, Descriptor,
                                        Digest, InvalidDescriptor, children, is_digest)

from .errors import OCIError
from .layout import REF_ANNOTATION, Layout, LayoutError

# Files `docker save` adds beside the layout; harmless, so skipped (never written) rather than refused.
DOCKER_SAVE_EXTRAS = ("manifest.json", "repositories")
_COPY_BLOCK = 1 << 20


class ArchiveError(OCIError):
    """An archive that is not an OCI archive cogbuild will open (bad input from the user)."""

    exit_code = 2


def image_blobs(layout: Layout, desc: Descriptor) -> list[Descriptor]:
    """Every descriptor reachable from `desc` (itself included), children after parents."""
    found: dict[str, Descriptor] = {}

    def visit(node: Descriptor) -> None:
        if node.digest in found:
            return
        found[node.digest] = node
        if node.media_type in INDEX_TYPES + MANIFEST_TYPES:
            for child in _children(layout, node):
                visit(child)

    visit(desc)
    return list(found.values())


def _children(layout: Layout, node: Descriptor) -> list[Descriptor]:
    try:
        return children(layout.read_json(node.digest), node.media_type)
    except InvalidDescriptor as exc:
        raise LayoutError(f"manifest {node.digest} in {layout.root} is damaged: {exc}") from None


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
    images = _children(layout, desc)
    for child in images:
        if (child.platform or {}).get("architecture") == "amd64":
            return _single_manifest(layout, child)
    if not images:
        raise LayoutError(f"index {desc.digest} lists no images")
    return _single_manifest(layout, images[0])


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
        config, *layers = _children(layout, desc)
        small["manifest.json"] = json.dumps([{
            "Config": _blob_name(config.digest),
            "RepoTags": [name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"],
            "Layers": [_blob_name(layer.digest) for layer in layers],
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
    checked = Digest(digest)
    return f"blobs/{checked.algorithm}/{checked.hex}"


# -- reading an untrusted archive -----------------------------------------------------------------
def unpack_oci_archive(archive: Path, dest: Path) -> None:
    """Write the OCI layout held in `archive` into the new, empty directory `dest`.

    Accepted: `oci-layout`, `index.json` and `blobs/<algorithm>/<hex>` as regular files (each once, every
    blob hashing to its name), the directories above them, and docker save's extra files (skipped).
    Anything else (links, devices, other names, `..`, absolute paths) is refused with ArchiveError.
    The tar must be uncompressed, as OCI and docker archives are, so what is written never exceeds it.
    """
    written: set[str] = set()
    try:
        with tarfile.open(archive, mode="r|") as tar:
            for member in tar:
                _unpack_member(tar, member, archive, dest, written)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if not written and isinstance(exc, tarfile.ReadError):
            raise ArchiveError(f"{archive} is not an OCI archive (it is not a tar file)") from None
        raise ArchiveError(f"{archive} cannot be read as an OCI archive: {exc}") from None
    if "oci-layout" not in written:
        raise ArchiveError(f"{archive} is not an OCI archive (it has no oci-layout file)")


def _unpack_member(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path, dest: Path,
                   written: set[str]) -> None:
    name = member.name.removeprefix("./")  # tarfile already drops a directory's trailing slash
    if member.isdir() and _is_layout_dir(name):
        return  # created as needed below, with our own modes
    if not member.isreg() or not _is_layout_file(name):
        kind = "directory" if member.isdir() else "regular file" if member.isreg() else "link or special file"
        raise ArchiveError(f"{archive} is not an OCI archive cogbuild will open: it holds the {kind} "
                           f"{member.name!r}, and only oci-layout, index.json and blobs/<algorithm>/<hex> "
                           "may appear, as regular files")
    if name in DOCKER_SAVE_EXTRAS:
        return
    if name in written:
        raise ArchiveError(f"{archive} holds {name!r} twice; refusing to pick one")
    source = tar.extractfile(member)
    if source is None:  # not reachable for a regular file; kept so a tarfile change cannot write nothing
        raise ArchiveError(f"{archive}: cannot read {member.name!r}")
    algorithm = name.split("/")[1] if name.startswith("blobs/") else None
    got = _write_new_file(source, dest.joinpath(*name.split("/")), algorithm)
    written.add(name)
    if got is not None and got != name.rsplit("/", 1)[1]:
        raise ArchiveError(f"{archive} holds blob {name!r} whose content hashes differently; it is damaged")


def _write_new_file(source: IO[bytes], path: Path, algorithm: str | None) -> str | None:
    """Copy `source` into a file created here, never through a link; its hex digest when `algorithm` is set."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    hasher = hashlib.new(algorithm) if algorithm else None
    with os.fdopen(fd, "wb") as out:
        while block := source.read(_COPY_BLOCK):
            out.write(block)
            if hasher:
                hasher.update(block)
    return hasher.hexdigest() if hasher else None


def _is_layout_dir(name: str) -> bool:
    parts = name.split("/")
    return name in ("", ".", "blobs") or (len(parts) == 2 and parts[0] == "blobs" and parts[1] in DIGEST_FORMS)


def _is_layout_file(name: str) -> bool:
    if name in ("oci-layout", "index.json") + DOCKER_SAVE_EXTRAS:
        return True
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "blobs":
        return False
    return is_digest(f"{parts[1]}:{parts[2]}")
