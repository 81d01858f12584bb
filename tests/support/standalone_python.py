"""A python-build-standalone-style tarball made from a real CPython on this host (pyenv's), for tests.

python-build-standalone cannot be downloaded here, so tests pack a pyenv CPython the way its install_only
builds are laid out: one top folder `python/` with bin/, lib/, include/; relocatable (patchelf sets RUNPATH
$ORIGIN/../lib and friends), and with every shared library it links outside glibc (libssl, libcrypto,
libffi, libsqlite3, libz, liblzma, libbz2, …) copied into python/lib, so it runs on any glibc at least as
new as the host's, as a real build does. Packing takes a while, so the tarball is cached under the user's
cache directory, keyed by the CPython and this file, written atomically and checked by sha256 on reuse.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from components import require

PYENV = Path("/root/.pyenv/versions")
# What python-build-standalone links from the system (its ELF allow-list): glibc's libraries, libcrypt.
SYSTEM_LIBRARIES = re.compile(r"^(linux-vdso|ld-linux.*|lib(c|m|dl|rt|pthread|util|resolv|crypt)\.so\..*)$")
# Large parts no image needs; python-build-standalone's install_only builds leave most of them out too.
LEFT_OUT = re.compile(r"(^|/)(__pycache__|test|tests|idle_test|idlelib|tkinter|turtledemo|ensurepip|"
                      r"config-3\.\d+[^/]*|pkgconfig|share)(/|$)|\.a$|(^|/)_tkinter\.")


def standalone_tarball(version: str) -> tuple[bytes, str]:
    """The packed CPython `version` (e.g. "3.12.1") and its sha256, from the cache when it is there."""
    source = PYENV / version
    if not (source / "bin" / f"python{minor(version)}").exists():
        from components import unavailable

        unavailable(f"pyenv CPython {version} is not installed under {PYENV}")
    require("patchelf", "ldd")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cogbuild-tests" / "standalone"
    key = hashlib.sha256(Path(__file__).read_bytes() + version.encode()).hexdigest()[:16]
    tarball, digest_file = cache / f"cpython-{version}-{key}.tar.gz", cache / f"cpython-{version}-{key}.sha256"
    if tarball.exists() and digest_file.exists():
        data = tarball.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest == digest_file.read_text().strip():
            return data, digest
    data = pack(source, version)
    digest = hashlib.sha256(data).hexdigest()
    cache.mkdir(parents=True, exist_ok=True)
    for path, content in ((tarball, data), (digest_file, digest.encode())):
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".part-")
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(tmp, path)
    return data, digest


def minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def pack(source: Path, version: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="standalone-python-") as scratch:
        root = Path(scratch) / "python"
        copy_interpreter(source, root, minor(version))
        bundle_libraries(root)
        return tar_gz(root)


def copy_interpreter(source: Path, root: Path, minor_version: str) -> None:
    def ignore(folder: str, names: list[str]) -> list[str]:
        relative = os.path.relpath(folder, source)
        return [n for n in names if LEFT_OUT.search(f"{relative}/{n}")]

    shutil.copytree(source / "lib", root / "lib", symlinks=True, ignore=ignore)
    shutil.copytree(source / "include", root / "include", symlinks=True)
    site_packages = root / "lib" / f"python{minor_version}" / "site-packages"
    shutil.rmtree(site_packages)  # pip and whatever this host added: an install_only build has only pip
    site_packages.mkdir()
    (root / "bin").mkdir()
    shutil.copy2(source / "bin" / f"python{minor_version}", root / "bin" / f"python{minor_version}")
    for alias in ("python3", "python"):
        (root / "bin" / alias).symlink_to(f"python{minor_version}")


def bundle_libraries(root: Path) -> None:
    """Copy each non-glibc library the ELF files need into python/lib; point every RUNPATH inside."""
    lib = root / "lib"
    todo = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink() and is_elf(p)]
    seen: set[str] = set()
    while todo:
        elf = todo.pop()
        for name, path in needed_libraries(elf):
            if SYSTEM_LIBRARIES.match(name) or name in seen or (lib / name).exists():
                continue
            seen.add(name)
            copied = lib / name
            shutil.copy(path, copied)
            copied.chmod(0o755)
            todo.append(copied)
    for elf in (p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink() and is_elf(p)):
        runpath = "$ORIGIN/" + os.path.relpath(lib, elf.parent) if elf.parent != lib else "$ORIGIN"
        subprocess.run(["patchelf", "--set-rpath", runpath, str(elf)], check=True)


def is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def needed_libraries(elf: Path) -> list[tuple[str, str]]:
    """(soname, host path) of what `elf` links, as the host's loader resolves them."""
    done = subprocess.run(["ldd", str(elf)], capture_output=True, text=True)
    found = []
    for line in done.stdout.splitlines():
        match = re.match(r"\s*(\S+) => (/\S+)", line)
        if match:
            found.append((match.group(1), os.path.realpath(match.group(2))))
    return found


def tar_gz(root: Path) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped, \
            tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in [root, *sorted(root.rglob("*"))]:
            info = tar.gettarinfo(str(path), str(path.relative_to(root.parent)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def provider_manifest(builds: dict[str, tuple[bytes, str]], base_url: str) -> tuple[dict[str, bytes], str]:
    """Files for a StaticServer: a COGBUILD_PYTHON_PROVIDER manifest naming each build (amd64) and the
    tarballs; returns them and the manifest's URL."""
    files = {f"/cpython-{v}-x86_64.tar.gz": data for v, (data, _) in builds.items()}
    entries = [{"version": v, "arch": "amd64", "sha256": digest, "size": len(data),
                "url": f"{base_url}/cpython-{v}-x86_64.tar.gz"} for v, (data, digest) in builds.items()]
    files["/pythons.json"] = json.dumps({"pythons": entries}).encode()
    return files, f"{base_url}/pythons.json"
