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
from functools import partial
from typing import BinaryIO, Callable

import deflate
import zstandard

from .descriptor import OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD
from .errors import CogbuildError
from .tree import Entry, Tree


GZIP_LEVEL = 4  # libdeflate's: images within ~3 % of zlib -6's size, compressed ~3x faster (see docs/how-it-works.md)


@dataclass(frozen=True)
class Compression:
    """Which compressor and level: part of a build's identity, since it decides the layer digests.

    "gzip" is libdeflate, bundled in the pinned `deflate` wheel, so its bytes are the same on every host;
    "gzip-zlib" is the system zlib that images were compressed with before, kept to rebuild them.
    """

    name: str = "gzip"  # "gzip" | "gzip-zlib" | "zstd" | "none"
    level: int = GZIP_LEVEL

    @property
    def media_type(self) -> str:
        return {"gzip": OCI_LAYER_GZIP, "gzip-zlib": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD,
                "none": OCI_LAYER_TAR}[self.name]

    @property
    def identity(self) -> str:
        """Compressor name, level and library version, recorded in image annotations and cache keys."""
        if self.name == "gzip":
            return f"gzip-{self.level}-members{BLOCK}/libdeflate(deflate-{deflate.__version__})"
        if self.name == "gzip-zlib":
            return f"gzip-{self.level}-blocks{BLOCK}/zlib-{zlib.ZLIB_RUNTIME_VERSION}"
        if self.name == "zstd":
            return f"zstd-{self.level}/zstandard-{zstandard.__version__}"
        return "none"

    @classmethod
    def parse(cls, text: str) -> "Compression":
        """'gzip', 'gzip:9', 'gzip-zlib:6', 'zstd', 'zstd:3', 'none'."""
        name, _, level = text.partition(":")
        default = {"gzip": GZIP_LEVEL, "gzip-zlib": 6, "zstd": 3, "none": 0}
        if name not in default:
            raise ValueError(f"unknown compression {text!r} (use gzip, gzip-zlib, zstd or none, optionally :LEVEL)")
        return cls(name, int(level) if level else default[name])

    @classmethod
    def from_identity(cls, identity: str) -> "Compression":
        """The compression an image records as its identity (`gzip-6-blocks…/zlib-1.2.13`, `zstd-3/…`)."""
        kind, _, rest = identity.partition("-")
        level = rest.split("-")[0].split("/")[0]
        name = "gzip-zlib" if kind == "gzip" and "/zlib-" in identity else kind
        return cls.parse(f"{name}:{level}" if level else name)


@dataclass(frozen=True)
class LayerDigests:
    diff_id: str  # sha256 of the uncompressed tar
    digest: str  # sha256 of the compressed blob
    size: int  # compressed size in bytes
    uncompressed_size: int


class SourceChanged(CogbuildError, ValueError):
    """A file that changed while it was being put into a layer: the layer would not match its digest."""


BLOCK = 1 << 20  # bytes of tar per independently compressed block
COPY_CHUNK = 1 << 20  # bytes of a file's content read and passed on at a time


class _ParallelBlocks:
    """Cuts the stream into BLOCK-sized blocks, compresses them on the thread pool and emits them in order,
    the way pigz does: the bytes depend only on the input and the engine, never on how many threads ran."""

    ENDS_WITH_A_BLOCK = False  # whether the stream needs a last block even when no input is left for it

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending: deque[Future[bytes | bytearray]] = deque()
        self._submitted_any = False

    def _job(self, block: bytes, last: bool) -> Callable[[], bytes | bytearray]:
        raise NotImplementedError

    def _trailer(self) -> bytes:
        return b""

    def _submit(self, block: bytes, last: bool) -> None:
        self._pending.append(_compression_pool().submit(self._job(block, last)))
        self._submitted_any = True

    def _ready(self, wait_for: int) -> bytes:
        out = []
        while self._pending and (len(self._pending) > wait_for or self._pending[0].done()):
            out.append(self._pending.popleft().result())
        return b"".join(out)

    def compress(self, data: bytes) -> bytes:
        self._buffer += data
        while len(self._buffer) >= BLOCK:
            self._submit(bytes(memoryview(self._buffer)[:BLOCK]), last=False)
            del self._buffer[:BLOCK]
        return self._ready(wait_for=2 * _WORKERS)  # bounded memory: a few blocks in flight

    def flush(self) -> bytes:
        if self._buffer or not self._submitted_any or self.ENDS_WITH_A_BLOCK:
            self._submit(bytes(self._buffer), last=True)
        self._buffer.clear()
        return self._ready(wait_for=0) + self._trailer()


class MemberGzip(_ParallelBlocks):
    """gzip as one member per block, each compressed by libdeflate (gzip readers read all the members of
    a stream, RFC 1952: Go's, GNU gzip, Python's). libdeflate's output depends only on its version, which
    the pinned `deflate` wheel fixes, unlike the system zlib that Python links."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def _job(self, block: bytes, last: bool) -> Callable[[], bytes | bytearray]:
        return partial(deflate.gzip_compress, block, self.level)


class ParallelGzip(_ParallelBlocks):
    """gzip as one member of deflate blocks compressed by zlib (the engine images had before libdeflate).

    Each block is deflated by its own compressor primed with the previous 32 KiB of input and ends on a byte
    boundary (a sync flush); the last one finishes the stream. The bytes depend on the system zlib.
    """

    WINDOW = 32 * 1024
    ENDS_WITH_A_BLOCK = True  # the last deflate block, which finishes the stream
    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        self._crc = 0
        self._size = 0
        self._tail = b""
        self._header = self.HEADER

    def _job(self, block: bytes, last: bool) -> Callable[[], bytes | bytearray]:
        self._crc = zlib.crc32(block, self._crc)
        self._size += len(block)
        job = partial(self._deflate, self._header, block, self._tail, last)
        self._tail, self._header = (self._tail + block)[-self.WINDOW:], b""
        return job

    def _deflate(self, header: bytes, block: bytes, dictionary: bytes, last: bool) -> bytes:
        if dictionary:
            c = zlib.compressobj(self.level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
        else:
            c = zlib.compressobj(self.level, zlib.DEFLATED, -15, 9)
        return header + c.compress(block) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    def _trailer(self) -> bytes:
        return struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF)


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
        self._compressor: _ParallelBlocks | zstandard.ZstdCompressionObj | None
        if compression.name == "gzip":
            self._compressor = MemberGzip(compression.level)
        elif compression.name == "gzip-zlib":
            self._compressor = ParallelGzip(compression.level)
        elif compression.name == "zstd":
            self._compressor = zstandard.ZstdCompressor(level=compression.level).compressobj()
        else:
            self._compressor = None

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.tar_size  # tarfile asks where the archive starts

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
    # Straight onto the sink, file contents in COPY_CHUNK pieces: tarfile's stream mode would re-buffer
    # every byte in 10 KiB records, a cost per byte in Python that large layers felt.
    with tarfile.TarFile(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8",
                         copybufsize=COPY_CHUNK) as tar:
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
