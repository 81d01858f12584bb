"""A standalone CPython tarball (python-build-standalone's install_only layout) as part of the OS layer.

Such a tarball holds one top folder (`python/`) with bin/, lib/ and include/; it goes to /opt/python, and
/usr/bin/python3.X points at its interpreter so the image's entrypoint is the same as with Debian's Python.
"""

from __future__ import annotations

import io
import tarfile

import zstandard

from .tree import Tree, normalize

STANDALONE_PREFIX = "opt/python"


class TarballError(ValueError):
    """A Python tarball that cannot be used: the message names the file."""


def _open(data: bytes, name: str) -> tarfile.TarFile:
    if data[:4] == b"\x28\xb5\x2f\xfd":  # zstd frame magic
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    try:
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    except tarfile.TarError as exc:
        raise TarballError(f"{name} is not a readable tarball: {exc}") from None


def unpack_standalone_python(data: bytes, tree: Tree, python_version: str, name: str = "python.tar.gz") -> None:
    with _open(data, name) as tar:
        for member in tar.getmembers():
            parts = normalize(member.name).split("/", 1)
            if len(parts) < 2:
                continue  # the top folder itself
            path = f"{STANDALONE_PREFIX}/{parts[1]}"
            mode = member.mode & 0o7777
            if member.isdir():
                tree.add_dir(path, mode)
            elif member.issym():
                tree.add_symlink(path, member.linkname)
            elif member.isfile() or member.islnk():
                content = tar.extractfile(member)
                if content is None:
                    raise TarballError(f"{name}: cannot read {member.name}")
                tree.add_file(path, content.read(), mode)
    interpreter = f"{STANDALONE_PREFIX}/bin/python{python_version}"
    if interpreter not in tree:
        raise TarballError(f"{name} has no bin/python{python_version} under its top folder")
    tree.add_symlink(f"usr/bin/python{python_version}", f"/{interpreter}")
