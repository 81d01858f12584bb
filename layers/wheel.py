"""Install wheels into a Tree with the pypa `installer` library, as pip would into /usr/local.

The destination is a Tree: installer decides what goes where (purelib/platlib, .data directories,
console scripts, RECORD) and we record at image paths either the bytes (generated files, scripts) or,
for a wheel installed from a file, where to read each member again when the layer is written, so a
2 GB wheel never sits in memory.
"""

from __future__ import annotations

import io
import posixpath
import threading
import time
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, BinaryIO, Iterable, cast

from installer import install
from installer.destinations import WheelDestination
from installer.records import Hash, InvalidRecordEntry, RecordEntry, parse_record_file
from installer.scripts import Script
from installer.sources import WheelFile
from installer.utils import construct_record_file, copyfileobj_with_hashing, fix_shebang

from .errors import CogbuildError
from .tree import Tree


class WheelError(CogbuildError, ValueError):
    """A wheel that cannot be installed: the message names the file."""


@dataclass(frozen=True)
class PythonPaths:
    """Where pip would install into the image's Python.

    Debian's interpreter: /usr/local with dist-packages (its posix_local scheme). A standalone CPython:
    its own prefix with site-packages, as its sysconfig says.
    """

    python_version: str  # "3.11"
    prefix: str = "usr/local"
    standalone: bool = False

    @classmethod
    def standalone_at(cls, python_version: str, prefix: str) -> "PythonPaths":
        return cls(python_version, prefix, standalone=True)

    @classmethod
    def virtual_env_at(cls, python_version: str, prefix: str) -> "PythonPaths":
        """A venv installs like a standalone prefix: site-packages below it, scripts run its bin/python."""
        return cls(python_version, prefix, standalone=True)

    @property
    def site_packages(self) -> str:
        folder = "site-packages" if self.standalone else "dist-packages"
        return f"{self.prefix}/lib/python{self.python_version}/{folder}"

    @property
    def home(self) -> str:
        """The interpreter's prefix (PYTHONHOME) inside the image."""
        return self.prefix if self.standalone else "usr"

    @property
    def stdlib(self) -> str:
        return f"{self.home}/lib/python{self.python_version}"

    @property
    def interpreter(self) -> str:
        if self.standalone:
            return f"/{self.prefix}/bin/python{self.python_version}"
        return f"/usr/bin/python{self.python_version}"

    def scheme(self, distribution: str) -> dict[str, str]:
        return {
            "purelib": self.site_packages,
            "platlib": self.site_packages,
            "scripts": f"{self.prefix}/bin",
            "data": self.prefix,
            "headers": f"{self.prefix}/include/python{self.python_version}/{distribution}",
        }


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


_OPEN_WHEELS: OrderedDict[Path, zipfile.ZipFile] = OrderedDict()
_OPEN_WHEELS_MAX = 32
_OPEN_WHEELS_LOCK = threading.Lock()


def _open_member(wheel: Path, member: str) -> IO[bytes]:
    """A member of a wheel on disk, for the tar writer. Each wheel's zip directory is read once, not once
    per member (torch has thousands); a ZipFile serves several threads, and a member stream stays valid
    when its ZipFile is dropped from the few kept open."""
    with _OPEN_WHEELS_LOCK:
        archive = _OPEN_WHEELS.get(wheel)
        if archive is None:
            archive = _OPEN_WHEELS[wheel] = zipfile.ZipFile(wheel)
            if len(_OPEN_WHEELS) > _OPEN_WHEELS_MAX:
                _OPEN_WHEELS.popitem(last=False)
        _OPEN_WHEELS.move_to_end(wheel)
    info = archive.getinfo(member)
    if info.compress_type == zipfile.ZIP_DEFLATED and not info.flag_bits & _ENCRYPTED:
        return cast(IO[bytes], InflatedMember(wheel, info))  # read(), close() and `with`: all a layer asks
    return archive.open(info)


_ENCRYPTED = 0x1  # general purpose flag bit 0


class InflatedMember(io.RawIOBase):
    """A deflated zip member's bytes, read from the archive in pieces and inflated by ISA-L (isal), about
    2.5x zlib's speed (torch's 434 MB libtorch_cpu.so: 1.3 s instead of 3.2 s); zlib where isal is missing.
    Like zipfile, it checks the member's CRC-32 and size at its end. The output is the same bytes either
    way: inflating is exact."""

    def __init__(self, wheel: Path, info: zipfile.ZipInfo) -> None:
        super().__init__()
        self.info = info
        self.file = open(wheel, "rb")  # noqa: SIM115 - closed by close()
        try:
            self.file.seek(info.header_offset)
            header = self.file.read(_LOCAL_HEADER_SIZE)
            if len(header) != _LOCAL_HEADER_SIZE or header[:4] != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"{info.filename} in {wheel.name} has no valid local header")
            name_length, extra_length = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
            self.file.seek(info.header_offset + _LOCAL_HEADER_SIZE + name_length + extra_length)
        except BaseException:
            self.file.close()
            raise
        self.unread = info.compress_size  # compressed bytes still in the file
        self.left = info.file_size  # inflated bytes still to come
        self.inflater = _zlib.decompressobj(-15)  # raw deflate, as zip stores it
        self.pending = b""  # compressed bytes read but not yet inflated
        self.crc = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        wanted = self.left if size is None or size < 0 else min(size, self.left)
        pieces, got = [], 0
        while got < wanted:
            if not self.pending and self.unread:
                self.pending = self.file.read(min(_INPUT_PIECE, self.unread))
                self.unread = self.unread - len(self.pending) if self.pending else 0
            # With no input left, a call still gives out what the inflater holds back for `wanted`.
            piece = self.inflater.decompress(self.pending, wanted - got)
            self.pending = self.inflater.unconsumed_tail
            if not piece and (self.inflater.eof or not (self.pending or self.unread)):
                raise zipfile.BadZipFile(f"{self.info.filename} ends before its {self.info.file_size} bytes")
            pieces.append(piece)
            got += len(piece)
        data = b"".join(pieces)
        self.crc = _zlib.crc32(data, self.crc)
        self.left -= len(data)
        if self.left == 0 and wanted and self.crc != self.info.CRC:
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {self.info.filename!r}")
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self.file.close()
        super().close()


_LOCAL_HEADER_SIZE = 30
_INPUT_PIECE = 1 << 20
try:
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal has wheels for the platforms cogbuild runs on
    import zlib as _zlib  # type: ignore[no-redef]


def _recorded_hashes(archive: zipfile.ZipFile, source: WheelFile) -> dict[str, tuple[str, int]]:
    """Each member's sha256 and size as the wheel's RECORD states them, where RECORD's size matches the member's.

    pip keeps these in the installed RECORD for the files it copies unchanged, rather than reading them
    again to hash them; so do we (for torch, 700 MB less to inflate and hash). Where RECORD cannot be read,
    nothing is taken from it, and installer reports the fault."""
    sizes = {info.filename: info.file_size for info in archive.infolist()}
    try:
        rows = list(parse_record_file(source.read_dist_info("RECORD").splitlines()))
    except (KeyError, ValueError, InvalidRecordEntry):
        return {}
    hashes = {}
    for path, hash_, size in rows:
        name, _, value = hash_.partition("=")
        if name == "sha256" and value and size.isdigit() and sizes.get(path) == int(size):
            hashes[path] = (value, int(size))
    return hashes


class _TreeDestination(WheelDestination):
    def __init__(self, tree: Tree, scheme: dict[str, str], interpreter: str, wheel_file: Path | None,
                 recorded: dict[str, tuple[str, int]]) -> None:
        self.tree = tree
        self.scheme = scheme
        self.interpreter = interpreter
        self.wheel_file = wheel_file  # members are read from here again when the layer is written
        self.recorded = recorded  # member -> (sha256 as urlsafe base64, size), from the wheel's RECORD

    def _target(self, scheme: str, path: str) -> str:
        root = self.scheme[scheme]
        target = posixpath.normpath(posixpath.join(root, path))
        if not (target + "/").startswith(root + "/"):
            raise WheelError(f"wheel file {path!r} would be written outside {root}")
        return target

    def _write(self, scheme: str, path: str, stream: BinaryIO, executable: bool) -> RecordEntry:
        target, mode = self._target(scheme, path), 0o755 if executable else 0o644
        if self.wheel_file is not None and isinstance(stream, zipfile.ZipExtFile):  # a member as it is
            if stream.name in self.recorded:
                digest, size = self.recorded[stream.name]
            else:  # installer types the sink as BinaryIO; it only calls write(), which _Discard has
                digest, size = copyfileobj_with_hashing(stream, _Discard(), "sha256")  # type: ignore[arg-type]
            self.tree.add_streamed_file(target, partial(_open_member, self.wheel_file, stream.name), size, mode)
        else:  # made here (RECORD, scripts, a rewritten shebang) or from a wheel held in memory
            out = io.BytesIO()
            digest, size = copyfileobj_with_hashing(stream, out, "sha256")
            self.tree.add_file(target, out.getvalue(), mode)
        return RecordEntry(path, Hash("sha256", digest), size)

    def write_file(self, scheme, path, stream, is_executable):
        path = str(path)
        if scheme == "scripts":
            with fix_shebang(stream, self.interpreter) as fixed:
                return self._write(scheme, path, fixed, is_executable)
        return self._write(scheme, path, stream, is_executable)

    def write_script(self, name, module, attr, section):
        script_name, data = Script(name, module, attr, section).generate(self.interpreter, "posix")
        return self._write("scripts", script_name, io.BytesIO(data), True)

    def finalize_installation(self, scheme, record_file_path, records: Iterable):
        def prefix_for(file_scheme: str) -> str | None:
            if file_scheme == scheme:
                return None
            return posixpath.relpath(self.scheme[file_scheme], self.scheme[scheme]) + "/"

        with construct_record_file(list(records), prefix_for) as record:
            self._write(scheme, record_file_path, record, False)


def install_wheel(tree: Tree, wheel: bytes | Path, filename: str, paths: PythonPaths) -> None:
    """Install one wheel (its bytes, or a file that must stay unchanged until the layer is written, and
    its file name) into `tree`."""
    wheel_file = wheel if isinstance(wheel, Path) else None
    try:
        with zipfile.ZipFile(wheel if isinstance(wheel, Path) else io.BytesIO(wheel)) as archive:
            archive.filename = filename  # WheelFile parses name and version from it
            source = WheelFile(archive)
            recorded = _recorded_hashes(archive, source) if wheel_file is not None else {}
            destination = _TreeDestination(tree, paths.scheme(source.distribution), paths.interpreter, wheel_file,
                                           recorded)
            with warnings.catch_warnings():
                # installer skips __pycache__ files some wheels ship, and says so; skipping is right.
                warnings.simplefilter("ignore", RuntimeWarning)
                install(source, destination, {"INSTALLER": b"cogbuild\n"})
    except zipfile.BadZipFile:
        raise WheelError(f"{filename} is not a wheel (not a zip archive)") from None
    except Exception as exc:  # installer raises many types for a malformed wheel
        raise WheelError(f"cannot install {filename}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    """The message of an installer error; some carry (source object, message) as their arguments."""
    texts = [arg for arg in exc.args if isinstance(arg, str)]
    return " ".join((texts[-1] if texts else str(exc) or exc.__class__.__name__).split())


def normalize_wheel(data: bytes, mtime: int) -> bytes:
    """The wheel rewritten so that its bytes depend on its members alone: entries sorted (the .dist-info
    directory last, RECORD at its end), every timestamp `mtime` (no earlier than 1980, zip's epoch), modes
    0644 or 0755, deflated. The members and RECORD's hashes are unchanged, so it installs the same."""
    stamp = _zip_time(mtime)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in sorted(source.infolist(), key=_wheel_order):
            if info.is_dir():
                continue
            executable = (info.external_attr >> 16) & 0o111
            entry = zipfile.ZipInfo(info.filename, date_time=stamp)
            entry.external_attr = (0o100755 if executable else 0o100644) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(entry, source.read(info), compresslevel=6)
    return out.getvalue()


def _wheel_order(info: zipfile.ZipInfo) -> tuple[int, int, str]:
    top = info.filename.split("/", 1)[0]
    in_dist_info = top.endswith(".dist-info")
    return (in_dist_info, in_dist_info and info.filename == f"{top}/RECORD", info.filename)


def _zip_time(mtime: int) -> tuple[int, int, int, int, int, int]:
    return time.gmtime(max(mtime, 315532800))[:6]  # 1980-01-01, the first time a zip entry can hold
