"""What Debian's maintainer scripts would have done, done as data instead of by running them.

We never execute package code (the target may be another architecture), so the few effects that Python
and common system packages rely on are written here: the python3 command, a CA bundle, a non-root user,
world-writable temp directories, and dpkg's record of what is installed (for scanners and SBOM tools).
"""

from __future__ import annotations

from dataclasses import dataclass

from .deb import DebInfo
from .tree import Tree


@dataclass(frozen=True)
class ImageUser:
    name: str = "cog"
    uid: int = 1000
    gid: int = 1000
    home: str = "/home/cog"

    @property
    def spec(self) -> str:
        """The config's User field: numeric, so Kubernetes can check runAsNonRoot."""
        return f"{self.uid}:{self.gid}"


def add_python_links(tree: Tree, python_version: str) -> None:
    """`python3` and `python` name the image's interpreter, as the python3 package's links would."""
    binary = f"python{python_version}"
    if f"usr/bin/{binary}" not in tree:
        raise ValueError(f"the OS layer has no /usr/bin/{binary}; is the Python runtime package missing?")
    for alias in ("python3", "python"):
        if f"usr/bin/{alias}" not in tree:
            tree.add_symlink(f"usr/bin/{alias}", binary)


def add_ca_bundle(tree: Tree) -> None:
    """Concatenate Mozilla's certificates as update-ca-certificates would, and point OpenSSL at them."""
    certs = [p for p in tree.paths_under("usr/share/ca-certificates") if p.endswith(".crt")]
    if not certs:
        return
    bundle = b"".join(_with_newline(tree.get(p).read()) for p in certs)  # type: ignore[union-attr]
    tree.add_file("etc/ssl/certs/ca-certificates.crt", bundle)
    # OpenSSL's default CA file; without update-ca-certificates there are no hashed links in certs/.
    if "usr/lib/ssl/cert.pem" not in tree:
        tree.add_symlink("usr/lib/ssl/cert.pem", "/etc/ssl/certs/ca-certificates.crt")


def add_users(tree: Tree, user: ImageUser) -> None:
    passwd = (
        "root:x:0:0:root:/root:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"{user.name}:x:{user.uid}:{user.gid}::{user.home}:/bin/sh\n"
    )
    group = f"root:x:0:\nnogroup:x:65534:\n{user.name}:x:{user.gid}:\n"
    tree.add_file("etc/passwd", passwd.encode())
    tree.add_file("etc/group", group.encode())
    tree.add_dir("root", 0o700)
    tree.add_dir(user.home, 0o755, uid=user.uid, gid=user.gid)


def add_temp_dirs(tree: Tree) -> None:
    for path in ("tmp", "var/tmp"):
        tree.add_dir(path, 0o1777)


def add_dpkg_status(tree: Tree, packages: list[DebInfo]) -> None:
    """One control paragraph per package, as distroless images do, so scanners see what is installed."""
    for info in sorted(packages, key=lambda i: i.package):
        tree.add_file(f"var/lib/dpkg/status.d/{info.package}", _with_newline(info.control))


def _with_newline(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\n"
