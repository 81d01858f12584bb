"""A standalone CPython tarball (python-build-standalone's install_only layout) as part of the OS layer.

Such a tarball holds one top folder (`python/`) with bin/, lib/ and include/; it goes to /opt/python, and
/usr/bin/python3.X points at its interpreter so the image's entrypoint is the same as with Debian's Python.
"""

from __future__ import annotations

import io
import tarfile

import zstandard

from .tree import Tree, add_tar_members

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
    def place(path: str) -> str | None:
        top, _, rest = path.partition("/")
        return f"{STANDALONE_PREFIX}/{rest}" if rest else None  # drop the top folder itself

    with _open(data, name) as tar:
        add_tar_members(tree, tar, place, name)
    interpreter = f"{STANDALONE_PREFIX}/bin/python{python_version}"
    if interpreter not in tree:
        raise TarballError(f"{name} has no bin/python{python_version} under its top folder")
    tree.add_symlink(f"usr/bin/python{python_version}", f"/{interpreter}")
