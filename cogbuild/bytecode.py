"""Byte-compile an image's Python files with the image's own interpreter, so containers start warm.

CPython writes .pyc bytes that depend on the compiling process (marshal shares objects by reference
count), so bytecode compiled by whatever Python the host has would make digests host-dependent. Instead we
run the target's interpreter itself, straight from its unpacked OS layer through its own dynamic loader,
with a fixed hash seed, compiling one layer's files in sorted order in one fresh process: the same inputs
give the same bytes on any host of the target's architecture. For another architecture there is no
interpreter to run (we never emulate), so those images carry no bytecode; the manifest says which.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import struct
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import IO, Callable

from .cache import remove_scratch, scratch_dir
from .content_store import ContentStore
from .layers.tree import Tree

HOST_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine())
BATCH = 400  # files per compiling process; part of the bytes' identity, so fixed
LOADERS = {"amd64": ("x86_64-linux-gnu", "ld-linux-x86-64.so.2"), "arm64": ("aarch64-linux-gnu", "ld-linux-aarch64.so.1")}

# Runs inside the image's interpreter: framed (path, source) pairs in, framed unchecked-hash .pyc out.
_COMPILER = r"""
import importlib.util, struct, sys
from importlib._bootstrap_external import _code_to_hash_pyc
data = sys.stdin.buffer.read()
out, at = [], 0
while at < len(data):
    plen, slen = struct.unpack_from("<II", data, at); at += 8
    path = data[at:at + plen].decode(); at += plen
    source = data[at:at + slen]; at += slen
    try:
        pyc = _code_to_hash_pyc(compile(source, path, "exec", dont_inherit=True),
                                importlib.util.source_hash(source), False)
    except (SyntaxError, ValueError):
        pyc = b""  # as pip does: a file that does not compile is left to fail at import, if ever
    out.append(struct.pack("<I", len(pyc)) + pyc)
sys.stdout.buffer.write(b"".join(out))
"""


# Image path of each .py -> what opens its .pyc, and the .pyc's size.
Compiled = dict[str, tuple[Callable[[], IO[bytes]], int]]


def can_compile_for(arch: str) -> bool:
    return arch == HOST_ARCH


def cache_tag(python_version: str) -> str:
    return "cpython-" + python_version.replace(".", "")


class Compiler:
    """The image's interpreter, unpacked from its OS layer tree into a temporary directory on first use.

    The .pyc files it writes wait in that directory, one file per batch, until their layer is written (its
    entries read them from there), so a build holds a few batches in memory, never a layer's bytecode. With
    an `identity` (what decides the interpreter's files), each batch's output is also kept in the download
    cache's bytecode/ folder under the batch's inputs, so a layer recomposed with the same files compiles
    nothing.
    """

    def __init__(self, os_tree: Callable[[], Tree], arch: str, python_version: str, home: str,
                 cache_root: Path, identity: str | None = None) -> None:
        self._os_tree = os_tree
        self._cache_root = cache_root
        self.arch = arch
        self.python_version = python_version
        self.home = home  # "usr" for Debian's Python, "opt/python" for a standalone one
        self._identity = identity
        self._scratch: Path | None = None  # holds pyc/ (the output) and root/ (the interpreter's files)
        self._root: Path | None = None
        self._lock = threading.Lock()

    def _scratch_dir(self) -> Path:
        with self._lock:
            if self._scratch is None:
                self._scratch = scratch_dir(self._cache_root, "python-")
                (self._scratch / "pyc").mkdir()
            return self._scratch

    def _interpreter_root(self) -> Path:
        scratch = self._scratch_dir()
        with self._lock:
            if self._root is None:
                materialize(self._os_tree(), scratch / "root")
                self._root = scratch / "root"
            return self._root

    def compile(self, sources: dict[str, Callable[[], bytes]]) -> Compiled:
        """Image path of each .py (with what reads its source) -> what opens its .pyc, and its size; files
        that do not compile are left out.

        Files go in sorted order, in fixed batches of BATCH, one fresh interpreter per batch: the bytes then
        depend only on the files, never on how many batches ran at once. Sources are read when their batch
        runs, so only the batches in flight are in memory.
        """
        paths = sorted(sources)
        batches = [paths[i:i + BATCH] for i in range(0, len(paths), BATCH)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            results = pool.map(lambda batch: self._compile_batch(batch, sources), batches)
            return {path: pyc for result in results for path, pyc in result.items()}

    def _compile_batch(self, paths: list[str], sources: dict[str, Callable[[], bytes]]) -> Compiled:
        payload = bytearray()
        for path in paths:
            source = sources[path]()
            payload += struct.pack("<II", len(path.encode()), len(source)) + path.encode() + source
        key = self._cache_key(payload)
        kept = ContentStore(self._cache_root / "bytecode")
        output = kept.get_named(key) if key else None
        if output is None:
            output = self._run(payload)
            if key:
                kept.put_named(key, output)
        del payload
        # The batch's .pyc files wait in one scratch file, each read back from its offset when its layer is
        # written: one file per batch, not one per .pyc (a torch layer has thousands).
        out: Compiled = {}
        at, data = 0, memoryview(output)
        kept_output = _keep(self._scratch_dir() / "pyc", data)
        for path in paths:
            (size,) = struct.unpack_from("<I", data, at)
            at += 4
            if size:
                out[path] = (partial(_read_part, kept_output, at, size), size)
            at += size
        return out

    def _cache_key(self, payload: bytes | bytearray) -> str | None:
        """What names the kept output of the batch `payload` (its paths and sources), if this compiler keeps any."""
        if self._identity is None:
            return None
        return hashlib.sha256(f"{self._identity}\0{self.arch}\0{self.python_version}\0{BATCH}\0{_COMPILER}\0"
                              .encode() + payload).hexdigest()

    def _run(self, payload: bytes | bytearray) -> bytes:
        root = self._interpreter_root()
        triplet, loader = LOADERS[self.arch]
        python = root / self.home / "bin" / f"python{self.python_version}"
        libs = [str(root / "usr" / "lib" / triplet), str(root / self.home / "lib")]
        command = [str(root / "usr" / "lib" / triplet / loader), "--library-path", ":".join(libs), str(python),
                   "-S", "-s", "-B", "-c", _COMPILER]
        env = {"PYTHONHOME": str(root / self.home), "PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"}
        done = subprocess.run(command, input=payload, capture_output=True, env=env, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"the image's python{self.python_version} could not byte-compile: "
                               f"{done.stderr.decode(errors='replace').strip()[-500:]}")
        return done.stdout

    def close(self) -> None:
        if self._scratch is not None:
            remove_scratch(self._scratch)


class Compilers:
    """The image interpreters of one build, one per distinct OS + interpreter (its identity), each working
    under the cache root; close() removes what they unpacked."""

    def __init__(self, cache_root: Path) -> None:
        self.cache_root = cache_root
        self._by_identity: dict[str, Compiler] = {}

    def for_interpreter(self, identity: str, os_tree: Callable[[], Tree], arch: str, python_version: str,
                        home: str) -> Compiler:
        if identity not in self._by_identity:
            self._by_identity[identity] = Compiler(os_tree, arch, python_version, home, self.cache_root, identity)
        return self._by_identity[identity]

    def close(self) -> None:
        for compiler in self._by_identity.values():
            compiler.close()


def _keep(folder: Path, data: memoryview) -> Path:
    """`data` in a file of `folder` named by its hash (equal files are kept once), written atomically."""
    target = folder / hashlib.sha256(data).hexdigest()
    if not target.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    return target


def _read_part(path: Path, offset: int, size: int) -> IO[bytes]:
    """`size` bytes of `path` from `offset` (one .pyc: small, so read whole)."""
    with open(path, "rb") as f:
        f.seek(offset)
        return io.BytesIO(f.read(size))


def materialize(tree: Tree, root: Path) -> None:
    """Write a tree to disk (owners and modes aside: only the interpreter's files matter here)."""
    for entry in tree.entries():
        target = root / entry.path
        if entry.type == "dir":
            target.mkdir(parents=True, exist_ok=True)
        elif entry.type == "symlink":
            target.parent.mkdir(parents=True, exist_ok=True)
            link = entry.linkname
            if link.startswith("/"):  # keep absolute links inside the unpacked root
                link = os.path.relpath(root / link.lstrip("/"), target.parent)
            target.symlink_to(link)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.source is not None:
                shutil.copyfile(entry.source, target)  # streamed, not read whole
            else:
                target.write_bytes(entry.read())
            target.chmod(entry.mode & 0o777 | 0o600)


def add_bytecode(tree: Tree, compiler: Compiler, under: str) -> None:
    """Compile every .py below `under` in `tree` and add __pycache__/NAME.cpython-3XX.pyc beside it."""
    prefix = under.strip("/")
    sources = {"/" + e.path: e.read for e in tree.entries()
               if e.type == "file" and e.path.endswith(".py") and (e.path + "/").startswith(prefix + "/")}
    tag = cache_tag(compiler.python_version)
    for path, (open_pyc, size) in compiler.compile(sources).items():
        folder, name = path.rsplit("/", 1)
        tree.add_streamed_file(f"{folder}/__pycache__/{name[:-3]}.{tag}.pyc", open_pyc, size, 0o644)
