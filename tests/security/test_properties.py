"""Property tests: generated tars, .debs, wheels, manifests, index.json files and cog.yaml files against
their readers. Whatever the input, a reader either succeeds or raises one of the errors the CLI prints as
one sentence, and nothing is ever written outside its target.

Example counts are bounded (the set runs in well under a minute) and no example database is written.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cogbuild.bytecode import materialize
from cogbuild.cache import BlobCache
from cogbuild.cli import USER_ERRORS
from cogbuild.config import load_config
from cogbuild.images import find_image
from cogbuild.layers.deb import unpack_deb
from cogbuild.layers.descriptor import (DIGEST_FORMS, INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST,
                                        Digest, InvalidDescriptor, children, is_digest)
from cogbuild.layers.standalone import unpack_standalone_python
from cogbuild.layers.tarball import layer_bytes
from cogbuild.layers.tree import Tree
from cogbuild.layers.wheel import PythonPaths, install_wheel
from cogbuild.lock import LOCK_VERSION, loads
from cogbuild.registry.archive import ArchiveError, image_blobs, unpack_oci_archive
from cogbuild.registry.layout import Layout
from cogbuild.registry.remote import plan_from_layout
from crafted import KINDS, Member, deb_bytes, image_layout, layout_members, tar_bytes

FAST = settings(max_examples=40, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- strategies ------------------------------------------------------------------------------------
HEX64 = "ab" * 32
segment = st.one_of(
    st.sampled_from(["usr", "bin", "lib", "python", "x", "..", ".", "", "blobs", "sha256", "sha512", "oci-layout",
                     "index.json", HEX64, "\udce9", "a\\b", "tmp"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"), min_size=1, max_size=4),
)
relative = st.lists(segment, min_size=1, max_size=5).map("/".join)
name = st.one_of(relative, relative.map(lambda p: "/" + p), relative.map(lambda p: "./" + p))
member = st.builds(Member, name=name, kind=st.sampled_from(sorted(KINDS)), data=st.binary(max_size=16),
                   linkname=name, mode=st.integers(0, 0o7777))
members = st.lists(member, max_size=8)


@contextmanager
def sandbox() -> Iterator[tuple[Path, Path]]:
    """(inputs, target): everything in the sandbox but these two is compared before and after."""
    with tempfile.TemporaryDirectory(prefix="cogbuild-prop-") as tmp:
        root = Path(tmp)
        (root / "outside").mkdir()
        (root / "outside" / "victim").write_bytes(b"untouched")
        inputs, target = root / "inputs", root / "target"
        inputs.mkdir()
        target.mkdir()
        before = snapshot(root, skip=(inputs, target))
        cwd = os.getcwd()
        os.chdir(root / "outside")  # a relative write would land here
        try:
            yield inputs, target
        finally:
            os.chdir(cwd)
        assert snapshot(root, skip=(inputs, target)) == before, "something was written outside the target"


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, object]:
    found: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) not in skip]
        for entry in dirs + files:
            path = Path(folder, entry)
            found[str(path.relative_to(root))] = (os.readlink(path) if path.is_symlink()
                                                  else path.read_bytes() if path.is_file() else "dir")
    return found


def assert_inside(tree: Tree) -> None:
    """Every entry of a layer tree is a plain relative path: no `..`, no empty or `.` part, UTF-8."""
    for entry in tree.entries():
        parts = entry.path.split("/")
        assert entry.path and not entry.path.startswith("/") and ".." not in parts and "" not in parts
        assert "." not in parts and "\0" not in entry.path
        entry.path.encode("utf-8")


def tree_on_disk(tree: Tree, target: Path) -> None:
    """Write the tree the way the bytecode step does; every file and directory lies inside target (links
    may point anywhere, even at each other: they are created, never followed)."""
    materialize(tree, target)
    inside = os.path.realpath(target) + os.sep
    for folder, dirs, files in os.walk(target):
        for entry in dirs + files:
            path = os.path.join(folder, entry)
            assert os.path.islink(path) or os.path.realpath(path).startswith(inside), path


# -- tar archives as OCI archives ------------------------------------------------------------------
@FAST
@given(extra=members, keep_layout=st.booleans(), compression=st.sampled_from(["", "gz"]))
def test_any_tar_as_an_oci_archive(extra, keep_layout, compression):
    prefix = layout_members(image_layout()) if keep_layout else []
    with sandbox() as (inputs, target):
        archive = inputs / "in.tar"
        archive.write_bytes(tar_bytes(prefix + extra, compression))
        try:
            unpack_oci_archive(archive, target)
        except ArchiveError as exc:
            assert "\n" not in str(exc)
        for folder, dirs, files in os.walk(target):
            for entry in dirs + files:
                path = Path(folder, entry)
                assert not path.is_symlink() and (path.is_dir() or path.is_file())
                rel = str(path.relative_to(target))
                assert rel in ("oci-layout", "index.json", "blobs") or rel.startswith("blobs/")


@FAST
@given(data=st.binary(max_size=2048))
def test_any_bytes_as_an_oci_archive(data):
    with sandbox() as (inputs, target):
        archive = inputs / "in.tar"
        archive.write_bytes(data)
        try:
            unpack_oci_archive(archive, target)
        except ArchiveError:
            pass


# -- .debs and standalone Python tarballs -----------------------------------------------------------
def check_tree_reader(unpack: Callable[[Tree], None], what: str) -> None:
    """Run a reader that fills a layer tree: one sentence naming `what`, or a tree that stays inside its root
    (checked in memory, as a layer, and written to disk the way the bytecode step writes the OS tree)."""
    tree = Tree()
    with sandbox() as (_, target):
        try:
            unpack(tree)
        except USER_ERRORS as exc:
            assert what in str(exc) and "\n" not in str(exc)
            return
        assert_inside(tree)
        layer_bytes(tree, mtime=0)
        tree_on_disk(tree, target)


@FAST
@given(data_members=members)
def test_any_deb_data_tar(data_members):
    check_tree_reader(lambda tree: unpack_deb(deb_bytes(data_members), tree, "fuzz.deb"), "fuzz.deb")


@FAST
@given(cut=st.integers(0, 10_000), flip=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_damaged_debs(cut, flip, byte):
    data = bytearray(deb_bytes([Member("./usr/bin/tool", data=b"#!/bin/sh\n"), Member("./usr/lib", "dir")]))
    data[flip % len(data)] = byte
    check_tree_reader(lambda tree: unpack_deb(bytes(data[: max(cut, 8)]), tree, "damaged.deb"), "damaged.deb")


@FAST
@given(body=members, compression=st.sampled_from(["", "gz", "xz"]))
def test_any_standalone_python_tarball(body, compression):
    data = tar_bytes([Member("python/bin/python3.12", data=b"\x7fELF"), *body], compression)
    check_tree_reader(lambda tree: unpack_standalone_python(data, tree, "3.12", "fuzz-python.tar"),
                      "fuzz-python.tar")


# -- wheels -------------------------------------------------------------------------------------------
DIST = "fuzz-1.0"
zip_name = name.map(lambda p: p.replace("\udce9", "\u00e9"))  # zip names are text; RECORD may hold bad bytes
wheel_path = st.one_of(
    zip_name,
    zip_name.map(lambda p: f"{DIST}.data/" + p),
    st.tuples(st.sampled_from(["purelib", "platlib", "scripts", "headers", "data"]), relative)
    .map(lambda t: f"{DIST}.data/{t[0]}/{t[1]}".replace("\udce9", "\u00e9")),
)


@FAST
@given(files=st.dictionaries(wheel_path, st.binary(max_size=16), max_size=5),
       record_extra=st.lists(name, max_size=3), scripts=st.dictionaries(name, st.just("m:f"), max_size=2))
def test_any_wheel(files, record_extra, scripts):
    contents = dict(files)
    contents[f"{DIST}.dist-info/METADATA"] = b"Metadata-Version: 2.1\nName: fuzz\nVersion: 1.0\n"
    contents[f"{DIST}.dist-info/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if scripts:
        lines = "".join(f"{k} = {v}\n" for k, v in scripts.items())
        entry_points = f"[console_scripts]\n{lines}"
        contents[f"{DIST}.dist-info/entry_points.txt"] = entry_points.encode("utf-8", "surrogateescape")
    record = "".join(f"{p},,\n" for p in [*contents, *record_extra]) + f"{DIST}.dist-info/RECORD,,\n"
    contents[f"{DIST}.dist-info/RECORD"] = record.encode("utf-8", "surrogateescape")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path, data in contents.items():
            archive.writestr(path, data)
    tree = Tree()
    with sandbox():
        try:
            install_wheel(tree, buf.getvalue(), f"{DIST}-py3-none-any.whl", PythonPaths("3.11"))
        except USER_ERRORS as exc:
            assert f"{DIST}-py3-none-any.whl" in str(exc) and "\n" not in str(exc)
            return
    assert_inside(tree)
    assert all(e.path == "usr" or e.path.startswith("usr/local") for e in tree.entries() if e.type != "dir")


# -- manifests and index.json ---------------------------------------------------------------------
digest_text = st.one_of(
    st.sampled_from(["sha256:" + HEX64, "sha512:" + "cd" * 64, "sha256:" + HEX64.upper(), "sha256:" + HEX64 + "\n",
                     "sha256:" + "/" * 58 + "etc/pw", "sha256:" + "../" * 21 + "x", "md5:" + "ab" * 16, ""]),
    st.text(max_size=80), st.integers(), st.none())
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**40), st.floats(allow_nan=False),
                        st.text(max_size=8))
descriptor = st.one_of(
    st.fixed_dictionaries({"mediaType": st.one_of(st.sampled_from([OCI_MANIFEST, OCI_INDEX, "x"]), json_scalar),
                           "digest": digest_text, "size": st.one_of(st.integers(-5, 2**40), json_scalar)},
                          optional={"annotations": st.one_of(st.dictionaries(st.text(max_size=4), st.text(max_size=4)),
                                                             json_scalar),
                                    "platform": st.one_of(st.just({"os": "linux", "architecture": "amd64"}),
                                                          json_scalar)}),
    json_scalar)
document = st.one_of(
    st.fixed_dictionaries({}, optional={"manifests": st.one_of(st.lists(descriptor, max_size=3), json_scalar),
                                        "config": descriptor,
                                        "layers": st.one_of(st.lists(descriptor, max_size=3), json_scalar)}),
    st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=3), max_leaves=8))


@settings(FAST, max_examples=150)
@given(doc=document, media_type=st.sampled_from(INDEX_TYPES + MANIFEST_TYPES + ("other",)))
def test_children_of_any_document_are_checked_descriptors_or_one_error(doc, media_type):
    try:
        found = children(doc, media_type)
    except InvalidDescriptor as exc:
        assert "\n" not in str(exc)
        return
    for child in found:
        assert isinstance(child.digest, Digest) and is_digest(child.digest)
        assert child.digest.algorithm in DIGEST_FORMS and len(child.digest.hex) == DIGEST_FORMS[child.digest.algorithm]
        assert isinstance(child.size, int) and child.size >= 0


@FAST
@given(index=document, manifest=document, tag=st.sampled_from(["v1", "evil"]))
def test_any_layout_documents_through_run_push_and_export(index, manifest, tag):
    """A layout whose index.json and one manifest blob are generated: run, push planning and export."""
    with sandbox() as (_, target):
        layout = Layout(target).init()
        manifest_digest = layout.write_blob(json.dumps(manifest).encode())
        if isinstance(index, dict) and isinstance(index.get("manifests"), list):
            index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": 1,
                                       "annotations": {"org.opencontainers.image.ref.name": "v1"}})
        (target / "index.json").write_text(json.dumps(index))
        try:
            image = find_image(f"oci:{target}:{tag}", layout, gpu=False, cache_root=target.with_name("cache"))
            plan_from_layout(layout, image.manifest)
            image_blobs(layout, image.manifest)
        except USER_ERRORS as exc:
            assert "\n" not in str(exc)


# -- cog.yaml ----------------------------------------------------------------------------------------
yaml_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.text(max_size=12),
              st.sampled_from(["3.11", "3.12.4", "predict.py:Predictor", "../../etc/passwd:X", "/abs.py:P",
                               "requirements.txt", "NAME=value", "bad env"])),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["python_version", "python_requirements", "python_packages", "system_packages", "gpu",
                         "cuda", "run", "max", "fast", "x"]), inner, max_size=3),
    max_leaves=10)
cog_yaml = st.dictionaries(
    st.sampled_from(["build", "predict", "run", "model", "train", "environment", "concurrency", "image",
                     "weights", "unknown_key"]), yaml_value, max_size=5)


@FAST
@given(doc=cog_yaml, raw=st.one_of(st.none(), st.text(max_size=60)))
def test_any_cog_yaml(doc, raw):
    with sandbox() as (_, target):
        (target / "predict.py").write_text("class Predictor:\n    def predict(self): ...\n")
        (target / "cog.yaml").write_text(raw if raw is not None else json.dumps(doc))  # JSON is YAML
        try:
            load_config(target / "cog.yaml")
        except USER_ERRORS as exc:
            assert str(exc)


# -- cog.lock ----------------------------------------------------------------------------------------
lock_scalar = st.one_of(st.text(max_size=8), st.integers(-3, 2**40), st.booleans())
package = st.fixed_dictionaries({
    "platform": st.sampled_from(["linux/amd64", "linux/arm64"]), "group": st.sampled_from(["os", "python", "x"]),
    "kind": st.sampled_from(["deb", "wheel"]), "name": st.text(max_size=6), "version": st.just("1.0"),
    "filename": st.sampled_from(["a.whl", "../../a.whl", "/etc/a.deb"]), "url": st.text(max_size=12),
    "sha256": st.one_of(st.just("ab" * 32), st.just("AB" * 32), st.just("../" * 21 + "x"), st.text(max_size=70)),
    "size": st.one_of(st.integers(-1, 2**40), st.text(max_size=3)),
    "variants": st.one_of(st.just(["cpu"]), lock_scalar)}, optional={"required-by": st.lists(st.text(max_size=4))})


@FAST
@given(packages=st.lists(package, max_size=3), version=st.sampled_from([LOCK_VERSION, 0, "1"]),
       platforms=st.one_of(st.just(["linux/amd64"]), lock_scalar))
def test_any_lock(packages, version, platforms):
    text = tomli_w.dumps({"version": version, "inputs": "sha256:" + "0" * 64, "python": "3.11", "debian": "bookworm",
                          "platforms": platforms, "variants": ["cpu"], "package": packages})
    try:
        lock = loads(text, "cog.lock")
    except USER_ERRORS as exc:
        assert "cog.lock" in str(exc) and "\n" not in str(exc)
        return
    cache = BlobCache(Path("/cache"))
    for locked in lock.packages:
        assert cache.path(locked.artifact.sha256).parent == Path("/cache/blobs/sha256")
