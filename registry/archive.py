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

from cogbuild.layers.descriptor import DIGEST_FORMS, Descriptor, Digest, InvalidDescriptor, is_digest
from cogbuild.layers.imagegraph import (LAYOUT_MARKER, LAYOUT_MARKER_BYTES, NoSuchPlatform, is_index, select,
                                        tagged, layout_index_bytes, walk)

from .errors import OCIError
from .layout import Layout, LayoutError

# Files `docker save` adds beside the layout; harmless, so skipped (never written) rather than refused.
DOCKER_SAVE_EXTRAS = ("manifest.json", "repositories")
_COPY_BLOCK = 1 << 20


class ArchiveError(OCIError):
    """An archive that is not an OCI archive cogbuild will open (bad input from the user)."""

    exit_code = 2


def image_blobs(layout: Layout, desc: Descriptor) -> list[Descriptor]:
    """Every descriptor reachable from `desc` (itself included), children before parents."""
    try:
        return [node.descriptor for node in walk(layout, desc)]
    except InvalidDescriptor as exc:
        raise LayoutError(f"an image in {layout.root} is damaged: {exc}") from None


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


def write_archive(layout: Layout, desc: Descriptor, name: str, dest: Path, docker: bool = False,
                  platform: str | None = None, variant: str = "cpu") -> None:
    """The image as an archive file at `dest`, named `name`, written atomically.

    An oci-archive holds everything under `desc`. A docker-archive holds one manifest (`docker load`
    knows no index): the one `select(platform, variant)` picks, like `cogbuild run` on that platform.
    """
    extras: dict[str, bytes] = {}
    if docker:
        desc = _one_manifest(layout, desc, platform, variant)
        extras["manifest.json"] = _docker_manifest(layout, desc, name)
    partial = dest.with_name(f".{dest.name}.partial")
    try:
        with open(partial, "wb") as out:
            write_archive_stream(out, layout, desc, tagged(desc, name), extras)
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)


def _one_manifest(layout: Layout, desc: Descriptor, platform: str | None, variant: str) -> Descriptor:
    if not is_index(desc):
        return desc
    if platform is None:
        raise ValueError("a docker-archive of an index needs the platform to pick")
    try:
        return select(layout, desc, platform, variant).descriptor
    except NoSuchPlatform as exc:
        raise OCIError(f"cannot write a docker-archive for {platform}: the image {exc}") from None
    except InvalidDescriptor as exc:
        raise LayoutError(f"index {desc.digest} in {layout.root} is damaged: {exc}") from None


def _docker_manifest(layout: Layout, manifest: Descriptor, name: str) -> bytes:
    """`docker save`'s manifest.json: the config and layers as paths into blobs/."""
    config, *layers = [node.descriptor for node in walk(layout, manifest) if node.parent == manifest]
    return json.dumps([{
        "Config": _blob_name(config.digest),
        "RepoTags": [name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"],
        "Layers": [_blob_name(layer.digest) for layer in layers],
    }]).encode()


def write_archive_stream(out: IO[bytes], layout: Layout, top: Descriptor, entry: Descriptor,
                         extras: dict[str, bytes] | None = None) -> None:
    """The one oci-archive writer: a tar of the layout of everything under `top`, listed as `entry`.

    Deterministic (names sorted, mtime 0, root-owned, fixed modes) and written as a stream, so `out` may
    be a pipe (`ctr images import`). `extras` are more top-level files, like docker save's manifest.json.
    """
    small = {LAYOUT_MARKER: LAYOUT_MARKER_BYTES, "index.json": layout_index_bytes([entry]), **(extras or {})}
    blobs = {_blob_name(b.digest): b for b in image_blobs(layout, top)}
    names = sorted([*small, *blobs, "blobs", "blobs/sha256"])
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
            if name in small:
                info.size = len(small[name])
                tar.addfile(info, io.BytesIO(small[name]))
            elif name in blobs:
                info.size = blobs[name].size
                with layout.open_blob(blobs[name].digest) as blob:
                    tar.addfile(info, blob)
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)


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
    if LAYOUT_MARKER not in written:
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
    if name in (LAYOUT_MARKER, "index.json") + DOCKER_SAVE_EXTRAS:
        return True
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "blobs":
        return False
    return is_digest(f"{parts[1]}:{parts[2]}")
