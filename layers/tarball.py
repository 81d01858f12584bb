"""Deterministic layer tarballs: a Tree in, the same bytes out on any host, any day.

Every entry is sorted by path, carries mtime = SOURCE_DATE_EPOCH, numeric owners and no user/group names,
and the stream is compressed with a pinned compressor at a fixed level, with no name or timestamp in the
gzip header. While writing we hash both the tar (the layer's diff_id) and the compressed bytes (its digest).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import zstandard

from .descriptor import OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD
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
            return f"gzip-{self.level}/zlib-{zlib.ZLIB_RUNTIME_VERSION}"
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


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not {value!r}") from None


class _HashingSink(io.RawIOBase):
    """Receives the tar stream; hashes it, compresses it, hashes and writes the compressed bytes."""

    def __init__(self, out: BinaryIO, compression: Compression) -> None:
        self._out = out
        self._tar_hash = hashlib.sha256()
        self._blob_hash = hashlib.sha256()
        self.tar_size = 0
        self.blob_size = 0
        if compression.name == "gzip":
            self._compressor = zlib.compressobj(compression.level, zlib.DEFLATED, 31)  # 31: gzip wrapper
        elif compression.name == "zstd":
            self._compressor = zstandard.ZstdCompressor(level=compression.level).compressobj()
        else:
            self._compressor = None

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
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


def write_layer(tree: Tree, out: BinaryIO, compression: Compression = Compression(),
                mtime: int | None = None) -> LayerDigests:
    """Write `tree` as one layer blob to `out` and return its digests."""
    mtime = source_date_epoch() if mtime is None else mtime
    sink = _HashingSink(out, compression)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for entry in tree.entries():
            info = _tarinfo(entry, mtime)
            if entry.type != "file":
                tar.addfile(info)
            elif entry.source is not None:
                with open(entry.source, "rb") as f:
                    if os.fstat(f.fileno()).st_size != entry.size:
                        raise ValueError(f"{entry.source} changed size while the layer was being written")
                    tar.addfile(info, f)
            else:
                tar.addfile(info, io.BytesIO(entry.data or b""))
    return sink.finish()


def layer_bytes(tree: Tree, compression: Compression = Compression(), mtime: int | None = None
                ) -> tuple[bytes, LayerDigests]:
    """The whole blob in memory; convenient for small layers and tests."""
    buf = io.BytesIO()
    digests = write_layer(tree, buf, compression, mtime)
    return buf.getvalue(), digests
