"""Tiny real inputs built by the tests themselves: .debs with dpkg-deb, wheels with zipfile."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import zipfile
from pathlib import Path


def make_deb(workdir: Path, name: str, version: str = "1.0", arch: str = "amd64",
             files: dict[str, bytes] | None = None, symlinks: dict[str, str] | None = None,
             hardlinks: dict[str, str] | None = None, depends: str = "") -> bytes:
    """Build a real .deb with dpkg-deb from a staged tree; returns its bytes."""
    root = workdir / f"{name}_{version}_{arch}"
    (root / "DEBIAN").mkdir(parents=True)
    control = f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: t <t@example.org>\n" \
              f"Description: test package\n"
    if depends:
        control += f"Depends: {depends}\n"
    (root / "DEBIAN" / "control").write_text(control)
    for path, data in (files or {}).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(0o755 if path.endswith(".sh") or "/bin/" in path else 0o644)
    for path, dest in (symlinks or {}).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(dest)
    for path, existing in (hardlinks or {}).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(root / existing.lstrip("/"), target)
    out = workdir / f"{name}_{version}_{arch}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)], check=True,
                   capture_output=True)
    return out.read_bytes()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(name: str, version: str = "1.0", files: dict[str, bytes] | None = None,
               console_scripts: dict[str, str] | None = None, data_files: dict[str, bytes] | None = None,
               tag: str = "py3-none-any", deflated: bool = False) -> tuple[str, bytes]:
    """A valid wheel: (filename, bytes); its members stored, or deflated as real wheels' are."""
    dist = f"{name}-{version}.dist-info"
    contents = dict(files or {})
    for path, data in (data_files or {}).items():
        contents[f"{name}-{version}.data/{path}"] = data
    contents[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    contents[f"{dist}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
    if console_scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in console_scripts.items())
        contents[f"{dist}/entry_points.txt"] = f"[console_scripts]\n{lines}".encode()
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in contents.items()) + f"{dist}/RECORD,,\n"
    contents[f"{dist}/RECORD"] = record.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if deflated else zipfile.ZIP_STORED) as zf:
        for path, data in contents.items():
            zf.writestr(path, data)
    return f"{name}-{version}-{tag}.whl", buf.getvalue()
