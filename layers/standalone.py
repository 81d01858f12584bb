"""A standalone CPython tarball (python-build-standalone's install_only layout) as the interpreter's layer.

Such a tarball holds one top folder (`python/`) with bin/, lib/ and include/; it goes to /opt/python, and
/usr/bin/python3.X points at its interpreter so the image's entrypoint is the same as with Debian's Python.
"""

from __future__ import annotations

from .errors import CogbuildError
from .tree import SpillDir, Tree, add_tar_members, open_tar

STANDALONE_PREFIX = "opt/python"


class TarballError(CogbuildError, ValueError):
    """A Python tarball that cannot be used: the message names the file."""


def unpack_standalone_python(data: bytes, tree: Tree, python_version: str, name: str = "python.tar.gz",
                             spill: SpillDir | None = None) -> None:
    def place(path: str) -> str | None:
        top, _, rest = path.partition("/")
        return f"{STANDALONE_PREFIX}/{rest}" if rest else None  # drop the top folder itself

    with open_tar(data, name, TarballError) as tar:
        add_tar_members(tree, tar, place, name, spill)
    interpreter = f"{STANDALONE_PREFIX}/bin/python{python_version}"
    if interpreter not in tree:
        raise TarballError(f"{name} has no bin/python{python_version} under its top folder")
    tree.add_symlink(f"usr/bin/python{python_version}", f"/{interpreter}")
