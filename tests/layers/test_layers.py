"""layers/: deterministic bytes from trees, .debs and wheels built by the tests."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from cogbuild.layers.code import collect_model_files
from cogbuild.layers.deb import DebError, add_merged_usr_links, unpack_deb
from cogbuild.layers.image import LABEL_LIMIT, fit_labels, image_metadata
from cogbuild.layers.osfixups import ImageUser, add_ca_bundle, add_python_links, add_temp_dirs, add_users
from cogbuild.layers.tarball import Compression, layer_bytes
from cogbuild.layers.tree import Tree, TreeError
from cogbuild.layers.wheel import PythonPaths, WheelError, install_wheel
from fixtures_build import make_deb, make_wheel


def members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
        return tar.getmembers()


def sample_tree() -> Tree:
    tree = Tree()
    tree.add_file("src/z.py", b"z\n")
    tree.add_file("src/a.py", b"a\n", 0o755)
    tree.add_symlink("bin", "usr/bin")
    tree.add_dir("tmp", 0o1777)
    return tree


def test_tar_is_sorted_with_fixed_metadata_and_parents():
    blob, digests = layer_bytes(sample_tree(), mtime=0)
    infos = members(blob)
    assert [m.name for m in infos] == ["bin", "src", "src/a.py", "src/z.py", "tmp"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "" for m in infos)
    assert {m.name: m.mode for m in infos}["tmp"] == 0o1777
    assert blob[4:8] == b"\0\0\0\0", "gzip header must carry no timestamp"
    assert digests.diff_id.startswith("sha256:") and digests.size == len(blob)


def test_same_tree_same_bytes_whatever_the_insertion_order():
    other = Tree()
    other.add_dir("tmp", 0o1777)
    other.add_file("src/a.py", b"a\n", 0o755)
    other.add_symlink("bin", "usr/bin")
    other.add_file("src/z.py", b"z\n")
    assert layer_bytes(sample_tree(), mtime=0) == layer_bytes(other, mtime=0)


def test_the_mtime_given_is_every_entrys_and_the_environment_is_not_read(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")  # layers/ reads no environment: cogbuild.settings does
    blob, _ = layer_bytes(sample_tree(), mtime=1700000000)
    assert {m.mtime for m in members(blob)} == {1700000000}
    assert {m.mtime for m in members(layer_bytes(sample_tree())[0])} == {0}


def test_diff_id_is_independent_of_compression():
    gz = layer_bytes(sample_tree(), Compression("gzip", 6), mtime=0)[1]
    zst = layer_bytes(sample_tree(), Compression.parse("zstd"), mtime=0)[1]
    plain_blob, plain = layer_bytes(sample_tree(), Compression("none", 0), mtime=0)
    assert gz.diff_id == zst.diff_id == plain.diff_id == plain.digest
    assert gz.digest != zst.digest


def test_tree_refuses_paths_escaping_the_root_and_files_under_files():
    tree = Tree()
    with pytest.raises(TreeError):
        tree.add_file("../etc/passwd", b"")
    tree.add_file("a", b"")
    with pytest.raises(TreeError):
        tree.add_file("a/b", b"")


def test_deb_unpacks_into_merged_usr_with_hardlinks_as_files(tmp_path):
    deb = make_deb(tmp_path, "demo", files={"/bin/tool": b"#!/bin/sh\n", "/lib/x86_64-linux-gnu/libd.so.1": b"ELF",
                                           "/usr/share/doc/demo/copyright": b"c"},
                   symlinks={"/lib/x86_64-linux-gnu/libd.so": "libd.so.1"},
                   hardlinks={"/usr/bin/tool-again": "/bin/tool"})
    tree = Tree()
    add_merged_usr_links(tree, "amd64")
    info = unpack_deb(deb, tree, "demo.deb")
    assert (info.package, info.version, info.architecture) == ("demo", "1.0", "amd64")
    assert tree.get("usr/bin/tool").read() == b"#!/bin/sh\n"
    assert tree.get("usr/bin/tool").mode == 0o755
    assert tree.get("usr/bin/tool-again").type == "file"
    assert tree.get("usr/bin/tool-again").read() == b"#!/bin/sh\n"
    assert tree.get("usr/lib/x86_64-linux-gnu/libd.so").linkname == "libd.so.1"
    assert tree.get("bin").type == "symlink" and tree.get("bin").linkname == "usr/bin"
    assert tree.get("lib64").linkname == "usr/lib64"


def test_not_a_deb_is_one_clear_error(tmp_path):
    with pytest.raises(DebError, match="broken.deb"):
        unpack_deb(b"this is not an ar archive", Tree(), "broken.deb")


def test_os_fixups(tmp_path):
    tree = Tree()
    tree.add_file("usr/bin/python3.11", b"ELF", 0o755)
    tree.add_file("usr/share/ca-certificates/mozilla/B.crt", b"B")
    tree.add_file("usr/share/ca-certificates/mozilla/A.crt", b"A\n")
    add_python_links(tree, "3.11")
    add_ca_bundle(tree)
    add_users(tree, ImageUser())
    add_temp_dirs(tree)
    assert tree.get("usr/bin/python3").linkname == "python3.11"
    assert tree.get("etc/ssl/certs/ca-certificates.crt").read() == b"A\nB\n"
    assert "cog:x:1000:1000" in tree.get("etc/passwd").read().decode()
    assert tree.get("home/cog").uid == 1000
    assert tree.get("tmp").mode == 0o1777 and tree.get("var/tmp").mode == 0o1777
    with pytest.raises(ValueError, match="python3.13"):
        add_python_links(tree, "3.13")


def test_wheel_installs_like_pip_into_usr_local():
    name, wheel = make_wheel("demo_pkg", files={"demo_pkg/__init__.py": b"def main():\n    print('hi')\n"},
                             console_scripts={"demo": "demo_pkg:main"},
                             data_files={"data/share/demo/x.txt": b"x", "scripts/raw-tool": b"#!python\nprint(1)\n"})
    tree = Tree()
    install_wheel(tree, wheel, name, PythonPaths("3.11"))
    site = "usr/local/lib/python3.11/dist-packages"
    assert tree.get(f"{site}/demo_pkg/__init__.py").read().startswith(b"def main")
    script = tree.get("usr/local/bin/demo")
    assert script.mode == 0o755 and script.read().startswith(b"#!/usr/bin/python3.11")
    assert tree.get("usr/local/bin/raw-tool").read().startswith(b"#!/usr/bin/python3.11")
    assert tree.get("usr/local/share/demo/x.txt").read() == b"x"
    record = tree.get(f"{site}/demo_pkg-1.0.dist-info/RECORD").read().decode()
    assert "demo_pkg/__init__.py,sha256=" in record and "../../../bin/demo" in record
    assert tree.get(f"{site}/demo_pkg-1.0.dist-info/INSTALLER").read() == b"cogbuild\n"


def test_a_wheel_file_installs_with_its_records_hashes_and_the_same_bytes(tmp_path):
    # From a file, members copied as they are keep the hash the wheel's RECORD gives them (as pip does)
    # instead of being read again to hash: the same installed RECORD, the same layer, as hashing them.
    files = {"demo_pkg/__init__.py": b"x = 1\n", "demo_pkg/data.bin": os.urandom(5000)}
    name, wheel = make_wheel("demo_pkg", files=files, console_scripts={"demo": "demo_pkg:main"})
    (tmp_path / name).write_bytes(wheel)
    from_file, from_bytes = Tree(), Tree()
    install_wheel(from_file, tmp_path / name, name, PythonPaths("3.11"))
    install_wheel(from_bytes, wheel, name, PythonPaths("3.11"))
    assert layer_bytes(from_file) == layer_bytes(from_bytes)


def test_a_member_whose_record_size_is_wrong_is_hashed_from_its_bytes(tmp_path):
    import base64
    import hashlib
    import zipfile

    name, wheel = make_wheel("demo_pkg", files={"demo_pkg/__init__.py": b"x = 1\n"})
    with zipfile.ZipFile(io.BytesIO(wheel)) as source, zipfile.ZipFile(tmp_path / name, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("RECORD"):  # claims another hash and size for the module
                data = data.replace(b"demo_pkg/__init__.py,sha256=", b"demo_pkg/__init__.py,sha256=AAAA").replace(
                    b",6\n", b",7\n")
            target.writestr(info, data)
    tree = Tree()
    install_wheel(tree, tmp_path / name, name, PythonPaths("3.11"))
    record = tree.get("usr/local/lib/python3.11/dist-packages/demo_pkg-1.0.dist-info/RECORD").read().decode()
    real = base64.urlsafe_b64encode(hashlib.sha256(b"x = 1\n").digest()).decode().rstrip("=")
    assert f"demo_pkg/__init__.py,sha256={real},6" in record


def test_a_broken_wheel_is_one_clear_error():
    with pytest.raises(WheelError, match="broken-1.0-py3-none-any.whl"):
        install_wheel(Tree(), b"not a zip", "broken-1.0-py3-none-any.whl", PythonPaths("3.11"))


def test_model_files_honour_ignore_files_normalize_modes_and_split_weights(tmp_path):
    (tmp_path / "predict.py").write_text("x")
    (tmp_path / "run.sh").write_text("#!/bin/sh")
    (tmp_path / "run.sh").chmod(0o700)
    (tmp_path / "notes.txt").write_text("secret")
    (tmp_path / ".cogignore").write_text("notes.txt\ncache/\n")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "big").write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    (tmp_path / "weights.bin").write_bytes(os.urandom(2048))
    files = collect_model_files(tmp_path, uid=1000, gid=1000, weights_threshold=1024)
    paths = [e.path for e in files.code.entries()]
    assert "src/predict.py" in paths and "src/.cogignore" in paths
    assert not any(p.startswith(("src/notes", "src/cache", "src/.git", "src/weights")) for p in paths)
    assert files.code.get("src/run.sh").mode == 0o755 and files.code.get("src/predict.py").mode == 0o644
    assert files.code.get("src/predict.py").uid == 1000
    assert [next(iter(t.entries())).path for t in files.weights] == ["src"]
    assert files.weights[0].get("src/weights.bin").size == 2048


def test_gzip_layer_decompresses_to_the_diff_id():
    import hashlib

    blob, digests = layer_bytes(sample_tree(), mtime=0)
    assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == digests.diff_id


def test_parallel_gzip_is_valid_and_independent_of_write_sizes():
    import os as _os

    from cogbuild.layers.tarball import ParallelGzip

    data = _os.urandom(300_000) + b"layer " * 700_000  # spans several 1 MiB blocks

    def compress(step: int) -> bytes:
        gz = ParallelGzip(6)
        out = b"".join(gz.compress(data[i:i + step]) for i in range(0, len(data), step))
        return out + gz.flush()

    a, b = compress(4096), compress(3_000_001)
    assert a == b
    assert gzip.decompress(a) == data
    assert a[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def test_a_package_shipping_the_merged_usr_links_itself(tmp_path):
    # trixie's base-files ships /bin -> usr/bin, /sbin -> usr/sbin, ... as symlinks of its own
    deb = make_deb(tmp_path, "base-files", symlinks={"/sbin": "usr/sbin", "/lib": "usr/lib"},
                   files={"/usr/sbin/tool": b"x", "/usr/share/base-files/motd": b"m"})
    tree = Tree()
    add_merged_usr_links(tree, "amd64")
    unpack_deb(deb, tree, "base-files.deb")
    assert tree.get("usr/sbin").type == "dir"
    assert tree.get("sbin").linkname == "usr/sbin" and tree.get("usr/sbin/tool").read() == b"x"


def test_labels_too_large_for_containerd_become_manifest_annotations():
    key = "run.cog.openapi_schema"
    fits = "x" * (LABEL_LIMIT - len(key))
    assert fit_labels({key: fits}) == ({key: fits}, {})
    too_large = "é" * ((LABEL_LIMIT - len(key)) // 2 + 1)  # counted in UTF-8 bytes, as containerd does
    labels, annotations = fit_labels({key: too_large, "run.cog.config": "{}"})
    assert labels == {"run.cog.config": "{}"} and annotations == {key: too_large}
    manifest, config = {"annotations": annotations}, {"config": {"Labels": labels}}
    assert image_metadata(manifest, config, (key,)) == too_large
    assert image_metadata(manifest, config, ("run.cog.config",)) == "{}"
    assert image_metadata({}, {}, (key,)) is None
