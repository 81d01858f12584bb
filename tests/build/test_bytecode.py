"""Bytecode from the image's interpreter waits on disk until its layer is written, never in memory.

The "image" here is this host's Debian python3.11 (the interpreter, its loader, libraries and standard
library, as an OS layer would unpack them): the Compiler runs it the way it runs an image's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cogbuild.bytecode import Compiler, add_bytecode, can_compile_for
from cogbuild.layers.tarball import Compression, layer_bytes
from cogbuild.layers.tree import Tree
from components import unavailable

HOST_PYTHON = Path("/usr/bin/python3.11")
LIBS = Path("/usr/lib/x86_64-linux-gnu")
LEFT_OUT = {"site-packages", "dist-packages", "test", "__pycache__", "idlelib", "tkinter", "lib2to3", "ensurepip"}
SITE = "usr/local/lib/python3.11/dist-packages"
SOURCES = {f"{SITE}/pkg/__init__.py": b"from .mod import VALUE\n",
           f"{SITE}/pkg/mod.py": b"VALUE = {'a': 1, 'b': (2, 3)}\n",
           f"{SITE}/pkg/broken.py": b"def broken(:\n"}


def host_python_tree() -> Tree:
    tree = Tree()
    for name in ("ld-linux-x86-64.so.2", "libm.so.6", "libz.so.1", "libexpat.so.1", "libc.so.6"):
        path = (LIBS / name).resolve()
        tree.add_host_file(f"usr/lib/x86_64-linux-gnu/{name}", path, 0o755, path.stat().st_size)
    tree.add_host_file("usr/bin/python3.11", HOST_PYTHON, 0o755, HOST_PYTHON.stat().st_size)
    stdlib = Path("/usr/lib/python3.11")
    for path in stdlib.rglob("*.py"):
        if not LEFT_OUT & set(path.relative_to(stdlib).parts):
            tree.add_host_file(f"usr/lib/python3.11/{path.relative_to(stdlib)}", path, 0o644, path.stat().st_size)
    return tree


@pytest.fixture
def compiler(tmp_path):
    if not can_compile_for("amd64") or not HOST_PYTHON.exists() or not (LIBS / "ld-linux-x86-64.so.2").exists():
        unavailable("an amd64 Debian host with python3.11 (the interpreter these tests run as an image's)")
    compiler = Compiler(host_python_tree, "amd64", "3.11", "usr", tmp_path / "cache")
    yield compiler
    compiler.close()


def compiled(compiler: Compiler) -> Tree:
    tree = Tree()
    for path, source in SOURCES.items():
        tree.add_file(path, source)
    add_bytecode(tree, compiler, SITE)
    return tree


def test_bytecode_is_read_from_disk_when_the_layer_is_written(compiler):
    tree = compiled(compiler)
    pycs = {e.path: e for e in tree.entries() if e.path.endswith(".pyc")}
    assert sorted(pycs) == [f"{SITE}/pkg/__pycache__/__init__.cpython-311.pyc",
                            f"{SITE}/pkg/__pycache__/mod.cpython-311.pyc"]  # broken.py is left out, as pip does
    magic = subprocess.run([str(HOST_PYTHON), "-c", "import importlib.util, sys; "
                            "sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER)"], capture_output=True).stdout
    for entry in pycs.values():
        assert entry.data is None and entry.opener is not None  # read from the compiler's scratch file
        pyc = entry.read()
        assert len(pyc) == entry.size
        assert pyc[:4] == magic and pyc[4:8] == b"\x01\0\0\0"  # unchecked hash-based, as for any image


def test_two_compilers_give_the_same_layer_and_leave_nothing_behind(compiler, tmp_path):
    first = layer_bytes(compiled(compiler), Compression("gzip"), 0)
    other = Compiler(host_python_tree, "amd64", "3.11", "usr", tmp_path / "other")
    try:
        assert layer_bytes(compiled(other), Compression("gzip"), 0) == first
        opener = next(e for e in compiled(other).entries() if e.path.endswith(".pyc")).opener
        scratch = opener.args[0].parent.parent  # the batch's file, in pyc/ of the compiler's scratch directory
        assert scratch.is_dir()
    finally:
        other.close()
    assert not scratch.exists()


def test_a_batch_compiled_once_is_taken_from_the_cache_and_a_damaged_entry_is_compiled_again(compiler, tmp_path):
    first = Compiler(host_python_tree, "amd64", "3.11", "usr", tmp_path, identity="host-python")
    try:
        expected = layer_bytes(compiled(first), Compression("gzip"), 0)
    finally:
        first.close()
    [kept] = (tmp_path / "bytecode" / "sha256").iterdir()

    def no_interpreter() -> Tree:
        raise AssertionError("the interpreter was needed although the cache holds the batch")

    cached = Compiler(no_interpreter, "amd64", "3.11", "usr", tmp_path, identity="host-python")
    try:
        assert layer_bytes(compiled(cached), Compression("gzip"), 0) == expected
    finally:
        cached.close()
    kept.write_bytes(kept.read_bytes()[:-1] + b"?")
    again = Compiler(host_python_tree, "amd64", "3.11", "usr", tmp_path, identity="host-python")
    try:
        assert layer_bytes(compiled(again), Compression("gzip"), 0) == expected
    finally:
        again.close()
    assert kept.read_bytes()[-1:] != b"?"  # compiled again and kept anew
    assert layer_bytes(compiled(compiler), Compression("gzip"), 0) == expected  # the same as without a cache
