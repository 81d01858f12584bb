"""Deterministic layer tarballs: a Tree in, the same bytes out on any host, any day.

Every entry is sorted by path, carries mtime = SOURCE_DATE_EPOCH, numeric owners and no user/group names,
and the stream is compressed with a pinned compressor at a fixed level, with no name or timestamp in the
gzip header. While writing we hash both the tar (the layer's diff_id) and the compressed bytes (its digest).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tarfile
import threading
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import zstandard

from .descriptor import OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD
from .errors import CogbuildError
from .tree import Entry, Tree


@dataclass(frozen=True)
class Compression:
    """Which compressor and level: part of a build's identity, since it decides the layer digests."""

    name: str = "gzip"  # "gzip" | "zstd" | "none"
    level: int = 6

    @property
    def media_type(self) -> str:
        return {"gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD, "none": OCI_LAYER_TAR}[self.name]

    @property
    def identity(self) -> str:
        """Compressor name, level and library version, recorded in image annotations and cache keys."""
        if self.name == "gzip":
            return f"gzip-{self.level}-blocks{ParallelGzip.BLOCK}/zlib-{zlib.ZLIB_RUNTIME_VERSION}"
        if self.name == "zstd":
            return f"zstd-{self.level}/zstandard-{zstandard.__version__}"
        return "none"

    @classmethod
    def parse(cls, text: str) -> "Compression":
        """'gzip', 'gzip:9', 'zstd', 'zstd:3', 'none'."""
        name, _, level = text.partition(":")
        default = {"gzip": 6, "zstd": 3, "none": 0}
        if name not in default:
            raise ValueError(f"unknown compression {text!r} (use gzip, zstd or none, optionally :LEVEL)")
        return cls(name, int(level) if level else default[name])


@dataclass(frozen=True)
class LayerDigests:
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the compressed blob
    size: int  # compressed size in bytes
    uncompressed_size: int


class SourceChanged(CogbuildError, ValueError):
    """A file that changed while it was being put into a layer: the layer would not match its digest."""


class ParallelGzip:
    """gzip in independent 1 MiB deflate blocks compressed on several cores, the way pigz does it.

    Each block is deflated by its own compressor primed with the previous 32 KiB of input and ends on a byte
    boundary (a sync flush); the last one finishes the stream. The bytes depend only on the input, the block
    size, the level and zlib, never on how many threads ran: the same layer gives the same digest anywhere
    the same zlib is used.
    """

    BLOCK = 1 << 20
    WINDOW = 32 * 1024
    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown

    def __init__(self, level: int) -> None:
        self.level = level
        self._buffer = bytearray()
        self._pending: deque[Future[bytes]] = deque()
        self._crc = 0
        self._size = 0
        self._tail = b""
        self._started = False

    def _deflate(self, block: bytes, dictionary: bytes, last: bool) -> bytes:
        if dictionary:
            c = zlib.compressobj(self.level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
        else:
            c = zlib.compressobj(self.level, zlib.DEFLATED, -15, 9)
        return c.compress(block) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    def _submit(self, block: bytes, last: bool) -> None:
        self._crc = zlib.crc32(block, self._crc)
        self._size += len(block)
        self._pending.append(_compression_pool().submit(self._deflate, block, self._tail, last))
        self._tail = (self._tail + block)[-self.WINDOW:]

    def _ready(self, wait_for: int) -> bytes:
        out = [self.HEADER] if not self._started else []
        self._started = True
        while self._pending and (len(self._pending) > wait_for or self._pending[0].done()):
            out.append(self._pending.popleft().result())
        return b"".join(out)

    def compress(self, data: bytes) -> bytes:
        self._buffer += data
        while len(self._buffer) >= self.BLOCK:
            self._submit(bytes(self._buffer[:self.BLOCK]), last=False)
            del self._buffer[:self.BLOCK]
        return self._ready(wait_for=2 * _WORKERS)  # bounded memory: a few blocks in flight

    def flush(self) -> bytes:
        self._submit(bytes(self._buffer), last=True)
        self._buffer.clear()
        body = self._ready(wait_for=0)
        return body + struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF)


_WORKERS = max(1, os.cpu_count() or 1)
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _compression_pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="deflate")
        return _POOL


class _HashingSink(io.RawIOBase):
    """Receives the tar stream; hashes it, compresses it, hashes and writes the compressed bytes."""

    def __init__(self, out: BinaryIO, compression: Compression) -> None:
        self._out = out
        self._tar_hash = hashlib.sha256()
        self._blob_hash = hashlib.sha256()
        self.tar_size = 0
        self.blob_size = 0
        self._compressor: ParallelGzip | zstandard.ZstdCompressionObj | None
        if compression.name == "gzip":
            self._compressor = ParallelGzip(compression.level)
        elif compression.name == "zstd":
            self._compressor = zstandard.ZstdCompressor(level=compression.level).compressobj()
        else:
            self._compressor = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        self._tar_hash.update(data)
        self.tar_size += len(data)
        self._emit(self._compressor.compress(data) if self._compressor else data)
        return len(data)

    def finish(self) -> LayerDigests:
        if self._compressor:
            self._emit(self._compressor.flush())
        return LayerDigests("sha256:" + self._tar_hash.hexdigest(), "sha256:" + self._blob_hash.hexdigest(),
                            self.blob_size, self.tar_size)

    def _emit(self, chunk: bytes) -> None:
        if chunk:
            self._blob_hash.update(chunk)
            self.blob_size += len(chunk)
            self._out.write(chunk)


def _tarinfo(entry: Entry, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.path)
    info.mtime = mtime
    info.mode = entry.mode & 0o7777
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    if entry.type == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.type == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.linkname
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
    return info


def write_layer(tree: Tree, out: BinaryIO, compression: Compression = Compression(), mtime: int = 0) -> LayerDigests:
    """Write `tree` as one layer blob to `out` and return its digests; every entry's mtime is `mtime`
    (the build's SOURCE_DATE_EPOCH, which cogbuild.settings reads: layers/ reads no environment)."""
    sink = _HashingSink(out, compression)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for entry in tree.entries():
            info = _tarinfo(entry, mtime)
            if entry.type != "file":
                tar.addfile(info)
            elif entry.source is not None:
                with open(entry.source, "rb") as f:
                    if os.fstat(f.fileno()).st_size != entry.size:
                        raise SourceChanged(f"{entry.source} changed size while the layer was being written; "
                                            "build again once nothing writes to it")
                    tar.addfile(info, f)
            elif entry.opener is not None:
                with entry.opener() as stream:
                    tar.addfile(info, stream)  # copies exactly entry.size bytes, or fails when fewer come
                    if stream.read(1):
                        raise SourceChanged(f"{entry.path} grew while the layer was being written; build again "
                                            "once nothing writes to it")
            else:
                tar.addfile(info, io.BytesIO(entry.data or b""))
    return sink.finish()


def layer_bytes(tree: Tree, compression: Compression = Compression(), mtime: int = 0) -> tuple[bytes, LayerDigests]:
    """The whole blob in memory; convenient for small layers and tests."""
    buf = io.BytesIO()
    digests = write_layer(tree, buf, compression, mtime)
    return buf.getvalue(), digests
