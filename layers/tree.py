"""A filesystem tree held in memory: the input of every layer, independent of any host's disk.

Paths are POSIX, relative to the image root, without a leading slash ("usr/bin/python3"). A file's content
is either bytes, a path to read when the tar is written (large weights stay on disk), or a stream opened
when the tar is written (a wheel's member, read from the wheel in the download cache): what is not small
is read when written, never held, so composing a layer takes the same memory for any size of image.
"""

from __future__ import annotations

import io
import lzma
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Callable, Iterator, Literal

import zstandard

from .errors import CogbuildError

EntryType = Literal["file", "dir", "symlink"]


class TreeError(CogbuildError, ValueError):
    """An entry that cannot be placed in an image (escapes the root, conflicting types)."""


@dataclass(frozen=True)
class Entry:
    path: str
    type: EntryType
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes | None = None  # file content held in memory
    source: Path | None = None  # or read from this host file at write time
    size: int = 0
    linkname: str = ""  # symlink target, kept as the package wrote it
    opener: Callable[[], IO[bytes]] | None = None  # or read from this stream, opened at write time

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.source is not None:
            return self.source.read_bytes()
        if self.opener is not None:
            with self.opener() as stream:
                return stream.read()
        return b""


# What reading a damaged tar or its compressed stream raises, besides tarfile's own errors.
TAR_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def normalize(path: str) -> str:
    """'./usr//bin/x' -> 'usr/bin/x'; refuses paths that climb out of the root or are not UTF-8 text."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise TreeError(f"path {path!r} escapes the image root")
    _check_text(path)
    return "/".join(parts)


def _check_text(text: str) -> None:
    """A layer's names travel as UTF-8 (PAX); a NUL or an undecodable byte has no place in one."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TreeError(f"path {text!r} is not valid UTF-8") from None
    if "\0" in text:
        raise TreeError(f"path {text!r} holds a NUL character")


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (tarfile's open errors span several)."""
    return " ".join(str(exc).split()) or exc.__class__.__name__


def open_tar(data: bytes, what: str, error: type[ValueError]) -> tarfile.TarFile:
    """A tar held in memory, plain or compressed (gzip, xz, bzip2, zstd); `error` names `what` otherwise."""
    try:
        if data[:4] == _ZSTD_MAGIC:
            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.ReadError:
        raise error(f"{what} is not a tar archive (plain, gzip, bzip2, xz or zstd)") from None
    except TAR_READ_ERRORS as exc:
        raise error(f"{what} is a damaged tar archive ({one_line(exc)})") from None


class Tree:
    """Entries by path; adding a path also creates its parent directories (each gets its own tar entry)."""

    def __init__(self, dir_mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self._entries: dict[str, Entry] = {}
        self._dir_mode = dir_mode
        self._uid, self._gid = uid, gid

    def copy(self) -> "Tree":
        """A tree with the same entries (entries are immutable, so they are shared, not copied)."""
        other = Tree(self._dir_mode, self._uid, self._gid)
        other._entries = dict(self._entries)
        return other

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: str) -> bool:
        return normalize(path) in self._entries

    def get(self, path: str) -> Entry | None:
        return self._entries.get(normalize(path))

    def entries(self) -> Iterator[Entry]:
        """Entries in the order they go into the tar: sorted by path bytes, so parents come first."""
        for path in sorted(self._entries, key=lambda p: p.encode()):
            yield self._entries[path]

    def shared_library_dirs(self, under: str) -> tuple[str, ...]:
        """Absolute directories below `under` that hold shared libraries (lib*.so, lib*.so.N)."""
        dirs = {posixpath.dirname(p) for p in self.paths_under(under)
                if self._entries[p].type != "dir" and ".so" in posixpath.basename(p)
                and posixpath.basename(p).startswith("lib")}
        return tuple(sorted("/" + d for d in dirs))

    def paths_under(self, prefix: str) -> list[str]:
        prefix = normalize(prefix) + "/"
        return sorted(p for p in self._entries if p.startswith(prefix))

    # -- adding ---------------------------------------------------------------------------------
    def add(self, entry: Entry) -> None:
        path = normalize(entry.path)
        if not path:
            return  # the root itself is implicit
        entry = replace(entry, path=path)
        self._add_parents(path)
        existing = self._entries.get(path)
        if existing is not None and existing.type == "dir" and entry.type == "dir":
            return  # the first writer of a directory decides its mode, as with dpkg
        if existing is not None and existing.type == "dir":
            self._drop_below(path)
        self._entries[path] = entry

    def add_file(self, path: str, data: bytes, mode: int = 0o644, uid: int | None = None,
                 gid: int | None = None) -> None:
        self.add(Entry(path, "file", mode, self._pick(uid, self._uid), self._pick(gid, self._gid),
                       data=data, size=len(data)))

    def add_host_file(self, path: str, source: Path, mode: int, size: int, uid: int | None = None,
                      gid: int | None = None) -> None:
        self.add(Entry(path, "file", mode, self._pick(uid, self._uid), self._pick(gid, self._gid),
                       source=source, size=size))

    def add_streamed_file(self, path: str, opener: Callable[[], IO[bytes]], size: int, mode: int = 0o644) -> None:
        """A file of `size` bytes that `opener` reads when the layer is written."""
        self.add(Entry(path, "file", mode, self._uid, self._gid, opener=opener, size=size))

    def add_dir(self, path: str, mode: int | None = None, uid: int | None = None,
                gid: int | None = None) -> None:
        """Add a directory, or set the mode and owner of one that exists."""
        entry = Entry(normalize(path), "dir", self._dir_mode if mode is None else mode,
                      self._pick(uid, self._uid), self._pick(gid, self._gid))
        if self._entries.get(entry.path, entry).type == "dir" and entry.path:
            self._add_parents(entry.path)
            self._entries[entry.path] = entry
        else:
            self.add(entry)

    def add_symlink(self, path: str, target: str) -> None:
        self.add(Entry(path, "symlink", 0o777, self._uid, self._gid, linkname=target))

    def remove(self, path: str) -> None:
        path = normalize(path)
        self._entries.pop(path, None)
        self._drop_below(path)

    def merge(self, other: "Tree") -> None:
        """Overlay `other` onto this tree (later content wins, as in a layered filesystem)."""
        for entry in other.entries():
            self.add(entry)

    # -- internals ------------------------------------------------------------------------------
    def _add_parents(self, path: str) -> None:
        parent = posixpath.dirname(path)
        missing = []
        while parent and parent not in self._entries:
            missing.append(parent)
            parent = posixpath.dirname(parent)
        if parent and self._entries[parent].type != "dir":
            kind = self._entries[parent].type
            raise TreeError(f"cannot add {path!r}: {parent!r} is a {kind}, not a directory")
        for directory in reversed(missing):
            self._entries[directory] = Entry(directory, "dir", self._dir_mode, self._uid, self._gid)

    def _drop_below(self, path: str) -> None:
        prefix = path + "/"
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]

    @staticmethod
    def _pick(value: int | None, default: int) -> int:
        return default if value is None else value


class SpillDir:
    """A scratch directory where file contents from compressed archives (.debs, Python tarballs) wait until
    their layer is written, so a layer's tree holds paths, not bytes. Small files stay in memory: a file of
    its own would cost more than it saves."""

    SMALL = 8 * 1024

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def add(self, tree: Tree, path: str, stream: IO[bytes], mode: int) -> None:
        """A file read from `stream` into `tree`: in memory when small, else from a file of the directory."""
        head = stream.read(self.SMALL + 1)
        if len(head) <= self.SMALL:
            tree.add_file(path, head, mode)
            return
        fd, kept = tempfile.mkstemp(dir=self.directory)
        with open(fd, "wb") as out:
            out.write(head)
            shutil.copyfileobj(stream, out, 1 << 20)
            size = out.tell()
        tree.add_host_file(path, Path(kept), mode, size)


def add_tar_members(tree: Tree, tar: tarfile.TarFile, place: Callable[[str], str | None], what: str,
                    spill: SpillDir | None = None) -> None:
    """Copy a tar's directories, symlinks and files into `tree` at place(member path); None skips a member.

    Hardlinks become regular files (read from the archive itself, never from the host). Device nodes and
    fifos are skipped: no package an image needs ships one. Any fault is one TreeError naming `what`.
    With `spill`, file contents that are not small go to its directory, read again when the layer is written.
    """
    try:
        for member in tar:  # in archive order: a compressed stream is read once, front to back
            _add_member(tree, tar, member, place, spill)
    except TreeError as exc:
        raise TreeError(f"{what}: {exc}") from None
    except TAR_READ_ERRORS as exc:
        raise TreeError(f"{what} is damaged: {one_line(exc)}") from None


def _add_member(tree: Tree, tar: tarfile.TarFile, member: tarfile.TarInfo, place: Callable[[str], str | None],
                spill: SpillDir | None) -> None:
    path = place(normalize(member.name))
    if not path:
        return
    mode = member.mode & 0o7777
    if member.isdir():
        if path not in tree:  # the first writer of a directory decides its mode, as with dpkg
            tree.add_dir(path, mode)
    elif member.issym():
        _check_text(member.linkname)
        tree.add_symlink(path, member.linkname)
    elif member.isfile() or member.islnk():
        try:
            content = tar.extractfile(member)
        except KeyError:  # tarfile's answer for a hardlink to a member the archive does not hold
            raise TreeError(f"hardlink {member.name!r} points at {member.linkname!r}, which is not in the "
                            "archive before it") from None
        if content is None:
            raise TreeError(f"cannot read {member.name}")
        if spill is not None:
            spill.add(tree, path, content, mode)
        else:
            tree.add_file(path, content.read(), mode)
