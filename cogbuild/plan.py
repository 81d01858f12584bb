"""The layer plan: which trees make up an image, least to most often changed, each with a cache key.

A LayerSpec names its inputs (artifact hashes, file hashes, options) in `key`; the builder composes a
layer only when no layer with that key exists yet, so editing predict.py recomposes the code layer alone.
"""

from __future__ import annotations

import hashlib
import threading
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cog

from . import __version__
from .artifacts import Artifact
from .bytecode import Compiler, Compilers, add_bytecode
from .cache import BlobCache, file_sha256
from .config import Weight, WeightSource
from .errors import CogbuildError
from .layers.code import collect_model_files, collect_weight_files
from .layers.deb import add_merged_usr_links, unpack_deb
from .layers.osfixups import ImageUser, add_ca_bundle, add_dpkg_status, add_python_links, add_temp_dirs, \
    add_users
from .layers.standalone import STANDALONE_PREFIX, unpack_standalone_python
from .layers.tree import SpillDir, Tree
from .layers.venv import add_virtual_env
from .layers.wheel import PythonPaths, install_wheel

LARGE_WHEEL = 64 * 1024 * 1024  # wheels above this get a layer each, shared across models
SERVER_PREFIX = "opt/cogbuild/server"  # the HTTP server's venv; the model's site-packages never see it
RUNTIME_DIST = "cogbuild_runtime"


@dataclass
class LayerSpec:
    comment: str
    key: str
    compose: Callable[[], Tree]
    inputs: list[Artifact] = field(default_factory=list)  # downloads compose() reads
    library_root: str | None = None  # libraries below this path go on the image's LD_LIBRARY_PATH


def _once(make: Callable[[], Tree]) -> Callable[[], Tree]:
    """`make` runs at most once, even when several threads ask at the same time."""
    lock = threading.Lock()
    made: list[Tree] = []

    def get() -> Tree:
        with lock:
            if not made:
                made.append(make())
            return made[0]

    return get


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([__version__, *parts], sort_keys=True, default=str).encode()).hexdigest()


def _hashes(artifacts: list[Artifact]) -> list[str]:
    return sorted(a.sha256 for a in artifacts)


@dataclass
class WheelTarget:
    """Where wheel layers install to, and the image's interpreter to byte-compile them with (if any)."""

    blobs: BlobCache
    paths: PythonPaths
    compiler: Compiler | None = None
    compiler_key: str | None = None  # which interpreter (OS + standalone CPython) compiled the bytecode


def base_layers(os_artifacts: list[Artifact], tarball: Artifact | None, blobs: BlobCache, arch: str,
                python_version: str, user: ImageUser, compilers: Compilers | None = None,
                spill: SpillDir | None = None) -> tuple[list[LayerSpec], WheelTarget]:
    """The OS layer (Debian packages) and, for a standalone CPython, the interpreter's own layer; and where
    wheels go. With `compilers` (shared by the images of one build), every layer's Python files get
    bytecode compiled by the image's interpreter, which is unpacked once per distinct OS + interpreter.
    With `spill`, unpacked file contents wait there, not in memory, until their layer is written."""
    debs = [a for a in os_artifacts if a.kind == "deb"]
    paths = PythonPaths.standalone_at(python_version, STANDALONE_PREFIX) if tarball else PythonPaths(python_version)
    os_unpack = _once(lambda: _unpack_os(debs, blobs, arch, python_version, user, tarball is None, spill))
    os_key = _key("os", arch, python_version, user, _hashes(debs), tarball is None)
    if tarball is None:
        interpreter_unpack, key = os_unpack, os_key
    else:
        standalone_unpack = _once(lambda: _unpack_standalone(tarball, blobs, python_version, spill))
        interpreter_unpack, key = _once(lambda: _overlay(os_unpack(), standalone_unpack())), \
            _key("interpreter", os_key, tarball.sha256)
    compiler = None
    if compilers is not None:
        compiler = compilers.for_interpreter(key, interpreter_unpack, arch, python_version, paths.home)
    stdlib_compiler = compiler if tarball is None else None
    specs = [_compiled_layer("OS and Python runtime (Debian packages)" if tarball is None else "OS (Debian packages)",
                             os_key, os_unpack, stdlib_compiler, paths.stdlib, debs)]
    if tarball is not None:
        specs.append(_compiled_layer(f"CPython {tarball.version} (python-build-standalone)", key,
                                     standalone_unpack, compiler, paths.stdlib, [tarball]))
    return specs, WheelTarget(blobs, paths, compiler, key if compiler else None)


def _compiled_layer(comment: str, key: str, unpack: Callable[[], Tree], compiler: Compiler | None, stdlib: str,
                    inputs: list[Artifact]) -> LayerSpec:
    """A layer unpacked from downloads; with a compiler, its standard library gets bytecode as Debian's
    py3compile would give it after installing."""
    def compose() -> Tree:
        tree = unpack().copy()
        if compiler:
            add_bytecode(tree, compiler, stdlib)
        return tree

    return LayerSpec(comment, _key(key, compiler is not None), compose, inputs)


def _unpack_os(debs: list[Artifact], blobs: BlobCache, arch: str, python_version: str, user: ImageUser,
               debian_python: bool, spill: SpillDir | None) -> Tree:
    tree = Tree()
    add_merged_usr_links(tree, arch)
    infos = [unpack_deb(blobs.read(deb), tree, deb.filename, spill) for deb in _dpkg_order(debs)]
    if debian_python:
        add_python_links(tree, python_version)
    if "usr/bin/sh" not in tree and "usr/bin/dash" in tree:
        tree.add_symlink("usr/bin/sh", "dash")
    add_ca_bundle(tree)
    add_users(tree, user)
    add_temp_dirs(tree)
    add_dpkg_status(tree, infos)
    return tree


def _unpack_standalone(tarball: Artifact, blobs: BlobCache, python_version: str, spill: SpillDir | None) -> Tree:
    """/opt/python from the tarball, and /usr/bin/python3.X, python3, python pointing at it."""
    tree = Tree()
    unpack_standalone_python(blobs.read(tarball), tree, python_version, tarball.filename, spill)
    add_python_links(tree, python_version)
    return tree


def _overlay(lower: Tree, upper: Tree) -> Tree:
    merged = lower.copy()
    merged.merge(upper)
    return merged


def system_layer(debs: list[Artifact], blobs: BlobCache, spill: SpillDir | None = None) -> LayerSpec:
    def compose() -> Tree:
        tree = Tree()
        infos = [unpack_deb(blobs.read(deb), tree, deb.filename, spill) for deb in _dpkg_order(debs)]
        add_dpkg_status(tree, infos)
        return tree

    return LayerSpec("system_packages (Debian packages)", _key("system", _hashes(debs)), compose, debs)


def wheels_layer(comment: str, wheels: list[Artifact], target: WheelTarget) -> LayerSpec:
    def compose() -> Tree:
        tree = Tree()
        _install_wheels(tree, wheels, target, target.paths)
        _compile(tree, target, target.paths)
        return tree

    key = _key("wheels", target.paths, _hashes(wheels), target.compiler_key)
    return LayerSpec(comment, key, compose, wheels)


def _install_wheels(tree: Tree, wheels: list[Artifact], target: WheelTarget, paths: PythonPaths) -> None:
    for wheel in sorted(wheels, key=lambda w: w.name):
        # From the file: each member is read when the layer is written, not held (a torch wheel is GBs).
        install_wheel(tree, target.blobs.verified_path(wheel), wheel.filename, paths)


def _compile(tree: Tree, target: WheelTarget, *where: PythonPaths) -> None:
    """Bytecode for what was installed (as pip does after installing), if the image's interpreter runs here."""
    if target.compiler:
        for paths in where:
            add_bytecode(tree, target.compiler, paths.site_packages)


def python_layers(wheels: list[Artifact], target: WheelTarget, comment: str = "Python packages"
                  ) -> list[LayerSpec]:
    """One layer per large wheel (torch and friends are shared across models), then the rest together."""
    large = [w for w in wheels if w.size >= LARGE_WHEEL]
    small = [w for w in wheels if w.size < LARGE_WHEEL]
    specs = [wheels_layer(f"{w.name} {w.version}", [w], target) for w in sorted(large)]
    if small:
        specs.append(wheels_layer(comment, small, target))
    return specs


def cuda_layers(wheels: list[Artifact], target: WheelTarget) -> list[LayerSpec]:
    """The NVIDIA wheels of the gpu variant; their libraries go on LD_LIBRARY_PATH."""
    specs = python_layers(wheels, target, "CUDA libraries (NVIDIA wheels)")
    for spec in specs:
        spec.library_root = f"{target.paths.site_packages}/nvidia"
    return specs


def server_paths(python_version: str) -> PythonPaths:
    """The HTTP server's own virtual environment: its dependencies never meet the model's packages."""
    return PythonPaths.virtual_env_at(python_version, SERVER_PREFIX)


def runtime_layer(wheels: list[Artifact], target: WheelTarget) -> LayerSpec:
    """The HTTP server with its pinned dependencies in a venv of its own (SERVER_PREFIX), and the `cog` SDK
    in the model's site-packages, where the worker that imports the model finds it: the model's packages
    are resolved and installed as if the server did not exist, and the worker never sees the server's."""
    sdk_wheel, sdk_name, sdk_digest = runtime_sdk_wheel()
    server = server_paths(target.paths.python_version)

    def compose() -> Tree:
        tree = Tree()
        add_virtual_env(tree, server, target.paths)
        _install_wheels(tree, wheels, target, server)
        install_wheel(tree, sdk_wheel, sdk_name, server)
        install_wheel(tree, sdk_wheel, sdk_name, target.paths)
        _compile(tree, target, server, target.paths)
        return tree

    key = _key("runtime", target.paths, server, _hashes(wheels), sdk_digest, target.compiler_key)
    return LayerSpec("cogbuild runtime (cog SDK and HTTP server)", key, compose, wheels)


CODE_LAYER_COMMENT = "model code (/src)"  # how images (history) and provenance name the code layer


def code_layers(model_dir: Path, user: ImageUser, weights: Sequence[Weight] = ()) -> list[LayerSpec]:
    """The code, each large file in a layer of its own, then each `weights:` entry in a layer of its own
    (its local sources are left out of the code layer)."""
    sources = {w.name: [local_weight_source(model_dir, w, s) for s in w.sources] for w in weights}
    inside = tuple(p.relative_to(model_dir).as_posix() for paths in sources.values() for p in paths
                   if p.is_relative_to(model_dir))
    files = collect_model_files(model_dir, uid=user.uid, gid=user.gid, exclude=inside)
    specs = [_static_layer(CODE_LAYER_COMMENT, files.code)]
    specs += [_static_layer(f"weights {next(iter(t.entries())).path}", t) for t in files.weights]
    for weight in weights:
        tree = Tree(uid=user.uid, gid=user.gid)
        for source, path in zip(weight.sources, sources[weight.name], strict=False):
            collect_weight_files(path, weight.target, source.include, source.exclude, tree=tree)
        specs.append(_static_layer(f"weights {weight.name} ({weight.target})", tree))
    return specs


def local_weight_source(model_dir: Path, weight: Weight, source: WeightSource) -> Path:
    """Where a `weights:` source is on this host: a path (relative to cog.yaml) or file://PATH."""
    uri = source.uri.removeprefix("file://")
    if "://" in uri:
        raise CogbuildError(f"weights {weight.name!r}: source {source.uri} cannot be imported yet; cogbuild takes "
                            "local files (a path or file://PATH): download them next to cog.yaml and name that path")
    path = (model_dir / uri).resolve()
    if not path.exists():
        raise CogbuildError(f"weights {weight.name!r}: source {source.uri} does not exist ({path})")
    return path


def _static_layer(comment: str, tree: Tree) -> LayerSpec:
    """A layer whose tree is already known; its key hashes every entry's metadata and content."""
    h = hashlib.sha256()
    for e in tree.entries():
        h.update(f"{e.path}\0{e.type}\0{e.mode}\0{e.uid}\0{e.gid}\0{e.linkname}\0{e.size}\0".encode())
        if e.source is not None:
            h.update(bytes.fromhex(file_sha256(e.source)))
        elif e.type == "file":
            h.update(hashlib.sha256(e.read()).digest())
    return LayerSpec(comment, _key("static", h.hexdigest()), lambda: tree)


def runtime_sdk_wheel() -> tuple[bytes, str, str]:
    """The `cog` package this cogbuild carries, as a reproducible wheel (fixed timestamps, sorted)."""
    root = Path(cog.__file__).parent
    version = cog.__version__
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix in (".py", ".typed"))
    dist_info = f"{RUNTIME_DIST}-{version}.dist-info"
    contents: list[tuple[str, bytes]] = [(f"cog/{p.relative_to(root).as_posix()}", p.read_bytes())
                                         for p in files]
    contents.append((f"{dist_info}/METADATA", (
        f"Metadata-Version: 2.1\nName: {RUNTIME_DIST}\nVersion: {version}\n"
        "Summary: The cog SDK and HTTP server that cogbuild puts into images\n").encode()))
    contents.append((f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: cogbuild\n"
                                           b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    contents.append((f"{dist_info}/top_level.txt", b"cog\n"))
    record = "".join(f"{name},sha256={_urlsafe_sha256(data)},{len(data)}\n" for name, data in contents)
    contents.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in contents:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    data = buf.getvalue()
    return data, f"{RUNTIME_DIST}-{version}-py3-none-any.whl", hashlib.sha256(data).hexdigest()


def _urlsafe_sha256(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _dpkg_order(debs: list[Artifact]) -> list[Artifact]:
    """A stable unpack order; where two packages ship one path, the later name wins on every host."""
    return sorted(debs, key=lambda d: (d.name, d.version))
