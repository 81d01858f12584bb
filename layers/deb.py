"""Unpack Debian packages into a Tree without running their maintainer scripts.

The image uses Debian's merged-/usr layout: files a package ships under /bin, /sbin or /lib* land under
/usr, and the top-level names are symlinks (what `usrmerge`/debootstrap set up on a real system).
Hardlinks become regular files, so every entry stands alone in a layer.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from debian.arfile import ArFile

from .errors import CogbuildError
from .tree import TAR_READ_ERRORS, SpillDir, Tree, TreeError, add_tar_members, normalize, one_line, open_tar

MERGED_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


class DebError(CogbuildError, ValueError):
    """A .deb that cannot be read: the message names the package file."""


@dataclass(frozen=True)
class DebInfo:
    package: str
    version: str
    architecture: str
    control: bytes  # the control paragraph, for /var/lib/dpkg/status.d


def merged_usr_path(path: str) -> str:
    top, sep, rest = path.partition("/")
    return f"usr/{path}" if top in MERGED_DIRS else path


def _member(ar: ArFile, stem: str, name: str) -> tuple[str, bytes]:
    for member in ar.getnames():
        if member.startswith(stem):
            return member, ar.getmember(member).read()
    raise DebError(f"{name} has no {stem}* member; is it a Debian package?")


def read_deb(data: bytes, name: str = "package.deb") -> tuple[DebInfo, tarfile.TarFile]:
    # Imported here: deb822 compiles ~200 regular expressions at import, a cost only unpacking should pay.
    from debian.arfile import ArFile
    from debian.deb822 import Deb822

    try:
        ar = ArFile(fileobj=io.BytesIO(data))
    except Exception as exc:  # python-debian raises several types for a non-ar file
        raise DebError(f"{name} is not a Debian package ({exc})") from None
    control_member, control_payload = _member(ar, "control.tar", name)
    with open_tar(control_payload, f"{name}: {control_member}", DebError) as control_tar:
        control = _control_file(control_tar, name)
    fields = Deb822(control)
    info = DebInfo(fields.get("Package", ""), fields.get("Version", ""), fields.get("Architecture", ""),
                   control)
    data_member, data_payload = _member(ar, "data.tar", name)
    return info, open_tar(data_payload, f"{name}: {data_member}", DebError)


def _control_file(control_tar: tarfile.TarFile, name: str) -> bytes:
    try:
        found = next((m for m in control_tar.getmembers() if normalize(m.name) == "control"), None)
        if found is None or not found.isfile():
            raise DebError(f"{name} has no control file")
        return control_tar.extractfile(found).read()  # type: ignore[union-attr]
    except (TreeError, *TAR_READ_ERRORS) as exc:
        raise DebError(f"{name} has a damaged control archive ({one_line(exc)})") from None


def unpack_deb(data: bytes, tree: Tree, name: str = "package.deb", spill: SpillDir | None = None) -> DebInfo:
    """Add the package's files to `tree` (later packages overwrite earlier files, like dpkg); with `spill`,
    contents wait on disk rather than in memory."""
    info, tar = read_deb(data, name)

    def place(path: str) -> str | None:
        if not path or path in MERGED_DIRS:
            return None  # /bin, /lib, … themselves: add_merged_usr_links makes them, whatever a package ships
        return merged_usr_path(path)

    with tar:
        add_tar_members(tree, tar, place, name, spill)
    return info


def add_merged_usr_links(tree: Tree, arch: str) -> None:
    """/bin -> usr/bin and friends; lib64 only where the ABI puts its loader there."""
    names = ["bin", "sbin", "lib"] + (["lib64"] if arch == "amd64" else [])
    for top in names:
        tree.add_symlink(top, f"usr/{top}")
