"""OCI image layout on disk (image-spec "image-layout"): blobs by digest plus an index of named refs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from cogbuild.layers.descriptor import OCI_INDEX, Descriptor, Digest, InvalidDescriptor, children, sha256_digest
from cogbuild.layers.atomic import atomic_write
from cogbuild.layers.imagegraph import LAYOUT_MARKER, LAYOUT_MARKER_BYTES, REF_ANNOTATION, layout_index_bytes, tagged

from .errors import OCIError

__all__ = ["REF_ANNOTATION", "Layout", "LayoutError", "atomic_write", "write_layout_files"]
_CHUNK = 1 << 20


class LayoutError(OCIError):
    """The layout on disk is missing something or holds content that does not match its digest."""


class Layout:
    """A directory in OCI image layout format; writes are atomic and reads can be verified."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- creation ---------------------------------------------------------------------------
    def init(self) -> "Layout":
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = self.root / LAYOUT_MARKER
        if not marker.exists():
            atomic_write(marker, LAYOUT_MARKER_BYTES)
        if not (self.root / "index.json").exists():
            self._write_index([])
        return self

    # -- blobs ------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        """blobs/sha256/<hex>: only a validated digest becomes a path, so none can name another file."""
        try:
            checked = Digest(digest)
        except InvalidDescriptor as exc:
            raise LayoutError(f"cannot look up a blob in {self.root}: {exc}") from None
        if checked.algorithm != "sha256":
            raise LayoutError(f"blob {checked} is a {checked.algorithm} digest; {self.root} stores sha256 blobs")
        return self.root / "blobs" / "sha256" / checked.hex

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def write_blob(self, data: bytes) -> str:
        digest = sha256_digest(data)
        path = self.blob_path(digest)
        if not path.exists():
            atomic_write(path, data)
        return digest

    def add_blob_file(self, src: Path, digest: str) -> None:
        """Move a finished file whose digest the caller computed into the store (same filesystem).

        It replaces whatever is there: the caller's bytes were just hashed, an existing file may be corrupt.
        """
        os.replace(src, self.blob_path(digest))

    # -- remote-only blobs -------------------------------------------------------------------
    # A layer taken from a binary cache repository is named in an image without being downloaded; the
    # store remembers where it lives so that push can mount it and a local run can fetch it.
    def note_remote(self, digest: str, source: str) -> None:
        """Record that blob `digest`, absent here, lives in the repository `source` (registry/repository)."""
        atomic_write(self._remote_path(digest), source.encode())

    def remote_source(self, digest: str) -> str | None:
        """The repository holding a blob the store lacks, if a cache hit named it; None otherwise."""
        try:
            return self._remote_path(digest).read_text().strip() or None
        except OSError:
            return None

    def remote_only(self, blobs: Iterable[Descriptor]) -> dict[str, list[Descriptor]]:
        """Of `blobs`, those this store lacks but knows a repository for, grouped by that repository."""
        found: dict[str, list[Descriptor]] = {}
        for blob in blobs:
            source = None if self.has_blob(blob.digest) else self.remote_source(blob.digest)
            if source is not None:
                found.setdefault(source, []).append(blob)
        return found

    def _remote_path(self, digest: str) -> Path:
        return self.root / "remote" / self.blob_path(digest).name

    def read_blob(self, digest: str, verify: bool = True) -> bytes:
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise LayoutError(f"blob {digest} is missing from {self.root}") from None
        except OSError as exc:
            raise LayoutError(f"blob {digest} in {self.root} cannot be read: {exc.strerror}") from None
        if verify and sha256_digest(data) != digest:
            raise LayoutError(f"blob {digest} in {self.root} is corrupt (its content hashes differently)")
        return data

    def fetch(self, desc: Descriptor) -> bytes:
        """The verified bytes `desc` points at: a Layout is a BlobSource for imagegraph.walk()."""
        return self.read_blob(desc.digest)

    def open_blob(self, digest: str) -> BinaryIO:
        return open(self.blob_path(digest), "rb")

    def read_json(self, digest: str) -> dict:
        """A manifest, index or config blob, verified; LayoutError unless it is a JSON object."""
        try:
            doc = json.loads(self.read_blob(digest))
        except ValueError:
            raise LayoutError(f"blob {digest} in {self.root} is not JSON") from None
        if not isinstance(doc, dict):
            raise LayoutError(f"blob {digest} in {self.root} is not a JSON object")
        return doc

    def tmp_file(self) -> tuple[int, str]:
        """A temporary file inside the layout, so a finished blob can be renamed into place."""
        (self.root / "tmp").mkdir(exist_ok=True)
        import tempfile  # with shutil, random and compressors: loaded only to write

        fd, path = tempfile.mkstemp(dir=self.root / "tmp")
        os.fchmod(fd, 0o644)
        return fd, path

    # -- index / refs -----------------------------------------------------------------------
    def manifests(self) -> list[Descriptor]:
        try:
            index = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return []
        except ValueError:
            raise LayoutError(f"{self.root}/index.json is not JSON") from None
        try:
            return children(index, OCI_INDEX)
        except InvalidDescriptor as exc:
            raise LayoutError(f"{self.root}/index.json is damaged: {exc}") from None

    def tag(self, name: str, desc: Descriptor) -> None:
        """Point ref `name` at `desc`, replacing any earlier descriptor with that name."""
        keep = [m for m in self.manifests() if m.annotations.get(REF_ANNOTATION) != name]
        self._write_index(keep + [tagged(desc, name)])

    def resolve(self, name: str) -> Descriptor:
        for m in self.manifests():
            if m.annotations.get(REF_ANNOTATION) == name or m.digest == name:
                return m
        raise LayoutError(f"no image named {name!r} in {self.root}")

    def refs(self) -> Iterator[tuple[str, Descriptor]]:
        for m in self.manifests():
            if REF_ANNOTATION in m.annotations:
                yield m.annotations[REF_ANNOTATION], m

    def _write_index(self, manifests: list[Descriptor]) -> None:
        atomic_write(self.root / "index.json", layout_index_bytes(manifests))


def write_layout_files(root: Path, entries: list[Descriptor]) -> None:
    """oci-layout and index.json of a layout whose blobs are put in place by the caller (links, exports)."""
    atomic_write(root / LAYOUT_MARKER, LAYOUT_MARKER_BYTES)
    atomic_write(root / "index.json", layout_index_bytes(entries))


class HashingFile:
    """A download being written: knows its size and running sha256, and can start over (a server that
    ignored Range sent the whole file again)."""

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        self.reset()

    def reset(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.size = 0
        self.hasher = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.hasher.update(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()

    def close(self) -> None:
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
