"""The one content-addressed store every cache of cogbuild sits on.

Blobs are files named by their sha256 under `<root>/sha256/<hex>` (the same place an OCI layout keeps
its blobs, so a store is also readable as one); named references under `<root>/refs/<name>` hold the
sha256 of a blob. Every write lands in a temporary file beside its target and is renamed into place,
so a reader sees the whole blob or none; every read hashes the blob again, and one whose bytes no
longer match its name is removed (the caller fetches or computes it anew). Paths are built only from a
checked hex digest or reference name.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import CogbuildError
from .layers.atomic import atomic_write
from .layers.descriptor import is_sha256_hex
from .registry.layout import HashingFile

CHUNK = 1 << 20
_REF_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}")


class InvalidStoreKey(CogbuildError, ValueError):
    """A digest or reference name that cannot name a file in the store (a ValueError for callers that
    check input, a CogbuildError for the CLI's one sentence)."""


def file_sha256(path: Path) -> str:
    """The file's sha256, read in chunks (a multi-gigabyte blob is never held in memory)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


class ContentStore:
    """Blobs by sha256 and named references to them, under one root directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs = self.root / "sha256"
        self.refs = self.root / "refs"

    # -- blobs ----------------------------------------------------------------------------------
    def path(self, sha256: str) -> Path:
        """Where the blob `sha256` lives (whether or not it is there); refuses anything but a hex digest."""
        if not is_sha256_hex(sha256):
            raise InvalidStoreKey(f"{sha256!r} is not a sha256 (64 lowercase hex digits)")
        return self.blobs / sha256

    def get_path(self, sha256: str) -> Path | None:
        """The blob's file after hashing it in chunks, or None when absent or corrupt (a corrupt one is removed)."""
        path = self.path(sha256)
        try:
            intact = file_sha256(path) == sha256
        except FileNotFoundError:
            return None
        if not intact:
            path.unlink(missing_ok=True)
            return None
        return path

    def get_bytes(self, sha256: str) -> bytes | None:
        """The blob's bytes, checked against its name, or None when absent or corrupt (a corrupt one is removed)."""
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            path.unlink(missing_ok=True)
            return None
        return data

    def put_bytes(self, data: bytes) -> str:
        """Keep `data` under its sha256, written atomically; returns the sha256."""
        sha256 = hashlib.sha256(data).hexdigest()
        atomic_write(self.path(sha256), data)
        return sha256

    def put_stream(self, source: BinaryIO) -> str:
        """Keep what `source` reads to its end, hashed while written (never whole in memory); returns the sha256."""
        with self.writer() as sink:
            while chunk := source.read(CHUNK):
                sink.write(chunk)
        return sink.hasher.hexdigest()

    @contextmanager
    def writer(self) -> Iterator[HashingFile]:
        """A new blob, hashed as it is written; when the block ends without an error it is renamed into
        place under its sha256. The block may check `sink.hasher` and `sink.size` and raise to drop it."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        import tempfile  # with shutil, random and compressors: loaded only to write

        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".part-")
        os.fchmod(fd, 0o644)  # like every other blob: readable by the sandbox's and the runtime's users
        sink = HashingFile(os.fdopen(fd, "wb"))
        try:
            yield sink
            sink.close()
            os.replace(tmp, self.blobs / sink.hasher.hexdigest())
        finally:
            sink.close()
            Path(tmp).unlink(missing_ok=True)

    # -- references -----------------------------------------------------------------------------
    def _ref_path(self, name: str) -> Path:
        if not _REF_NAME.fullmatch(name):
            raise InvalidStoreKey(f"{name!r} is not a store reference name (letters, digits and ._+=-, "
                                  "at most 200, not starting with a punctuation mark)")
        return self.refs / name

    def set_ref(self, name: str, sha256: str) -> None:
        """Point `name` at the blob `sha256`, replacing what it named before in one rename."""
        self.path(sha256)  # checks the digest
        atomic_write(self._ref_path(name), sha256.encode())

    def get_ref(self, name: str, max_age: float | None = None) -> str | None:
        """The sha256 `name` points at, or None when there is no such reference (or it holds no digest, or
        was set more than `max_age` seconds ago)."""
        path = self._ref_path(name)
        try:
            if max_age is not None and time.time() - path.stat().st_mtime > max_age:
                return None
            sha256 = path.read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        return sha256 if is_sha256_hex(sha256) else None

    def put_named(self, name: str, data: bytes) -> str:
        """Keep `data` and point `name` at it; returns its sha256."""
        self._ref_path(name)  # a name that is refused writes nothing
        sha256 = self.put_bytes(data)
        self.set_ref(name, sha256)
        return sha256

    def get_named(self, name: str, max_age: float | None = None) -> bytes | None:
        """The verified bytes `name` points at, or None (no reference, or one older than `max_age` seconds,
        or its blob is gone or was corrupt)."""
        sha256 = self.get_ref(name, max_age)
        return None if sha256 is None else self.get_bytes(sha256)
