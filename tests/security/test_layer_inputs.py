"""Hostile .debs, wheels and Python tarballs: the layer tree keeps to its root, bad input is one sentence."""

from __future__ import annotations

import io
import zipfile

import pytest

from cogbuild.cli import USER_ERRORS
from cogbuild.layers.deb import unpack_deb
from cogbuild.layers.standalone import unpack_standalone_python
from cogbuild.layers.tarball import layer_bytes
from cogbuild.layers.tree import Tree
from cogbuild.layers.wheel import PythonPaths, install_wheel
from crafted import Member, ar_bytes, deb_bytes, tar_bytes

PY = [Member("python/bin/python3.12", data=b"\x7fELF")]


def refused(unpack, match: str) -> str:
    with pytest.raises(USER_ERRORS) as caught:
        unpack()
    message = str(caught.value)
    assert "\n" not in message and match in message, message
    return message


@pytest.mark.parametrize("hostile, reason", [
    ([Member("./../../etc/cron.d/x", data=b"x")], "escapes the image root"),
    ([Member("./usr/../../x", "dir")], "escapes the image root"),
    ([Member("./usr/a", "hardlink", linkname="/etc/shadow")], "which is not in the archive before it"),
    ([Member("./usr/a", "hardlink", linkname="../../../etc/shadow")], "which is not in the archive before it"),
    ([Member("./usr/lib/x", "symlink", linkname="/etc"), Member("./usr/lib/x/cron", data=b"x")],
     "'usr/lib/x' is a symlink, not a directory"),
    ([Member("./usr/\udce9", data=b"x")], "is not valid UTF-8"),
])
def test_a_deb_cannot_place_anything_outside_its_tree(hostile, reason):
    message = refused(lambda: unpack_deb(deb_bytes(hostile), Tree(), "evil_1.0_amd64.deb"), reason)
    assert message.startswith("evil_1.0_amd64.deb")


def test_absolute_names_and_devices_in_a_deb_stay_inside_or_are_dropped():
    tree = Tree()
    unpack_deb(deb_bytes([Member("/etc/app.conf", data=b"x"), Member("./dev/sda", "blockdev"),
                          Member("./run/fifo", "fifo")]), tree, "odd.deb")
    assert [e.path for e in tree.entries()] == ["etc", "etc/app.conf"]


@pytest.mark.parametrize("payload", [
    ar_bytes([("debian-binary", b"2.0\n"), ("control.tar.zst", b"\x28\xb5\x2f\xfdjunk")]),
    ar_bytes([("debian-binary", b"2.0\n"), ("control.tar.gz", tar_bytes([Member("control", data=b"x")], "gz")[:40])]),
    ar_bytes([("debian-binary", b"2.0\n"),
              ("control.tar.gz", tar_bytes([Member("control", "symlink", linkname="/etc/passwd")], "gz"))]),
    deb_bytes([Member("./usr/x", data=b"x")])[:-30],
])
def test_a_damaged_deb_is_one_sentence_naming_it(payload):
    refused(lambda: unpack_deb(payload, Tree(), "damaged.deb"), "damaged.deb")


@pytest.mark.parametrize("hostile, reason", [
    ([Member("python/../../../etc/x", data=b"x")], "escapes the image root"),
    ([Member("python/lib/a", "hardlink", linkname="/etc/shadow")], "which is not in the archive before it"),
    ([Member("python/lib", "symlink", linkname="/usr/lib"), Member("python/lib/x.so", data=b"x")],
     "is a symlink, not a directory"),
])
def test_a_standalone_python_tarball_cannot_escape(hostile, reason):
    refused(lambda: unpack_standalone_python(tar_bytes(PY + hostile, "gz"), Tree(), "3.12", "cpython.tar.gz"),
            reason)


def test_a_standalone_python_tarball_is_confined_to_its_prefix():
    tree = Tree()
    unpack_standalone_python(tar_bytes(PY + [Member("/python/lib/libpython3.12.so", data=b"x")]), tree, "3.12",
                             "cpython.tar")
    files = [e.path for e in tree.entries() if e.type != "dir"]
    assert files == ["opt/python/bin/python3.12", "opt/python/lib/libpython3.12.so", "usr/bin/python3.12"]


def wheel(files: dict[str, bytes], record_extra: str = "") -> bytes:
    dist = "evil-1.0.dist-info"
    contents = {**files, f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
                f"{dist}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{p},,\n" for p in contents) + record_extra + f"{dist}/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path, data in {**contents, f"{dist}/RECORD": record.encode()}.items():
            archive.writestr(path, data)
    return buf.getvalue()


@pytest.mark.parametrize("files, reason", [
    ({"../../../../etc/evil.pth": b"x"}, "would be written outside usr/local/lib/python3.11/dist-packages"),
    ({"/etc/evil": b"x"}, "evil-1.0-py3-none-any.whl"),
    ({"evil-1.0.data/data/../../../../etc/x": b"x"}, "would be written outside usr/local"),
    ({"evil-1.0.data/scripts/../../../x": b"#!python\n"}, "would be written outside usr/local/bin"),
    ({"evil-1.0.data/headers/../../../../../x": b"x"}, "would be written outside"),
    ({"evil-1.0.dist-info/entry_points.txt": b"[console_scripts]\n../../../../x = a:b\n"}, "outside usr/local/bin"),
])
def test_a_wheel_cannot_write_outside_its_scheme(files, reason):
    message = refused(lambda: install_wheel(Tree(), wheel(files), "evil-1.0-py3-none-any.whl", PythonPaths("3.11")),
                      reason)
    assert "evil-1.0-py3-none-any.whl" in message


def test_a_record_naming_a_path_outside_writes_nothing_there():
    tree = Tree()
    install_wheel(tree, wheel({"evil/__init__.py": b""}, "../../../../etc/passwd,,\n"),
                  "evil-1.0-py3-none-any.whl", PythonPaths("3.11"))
    assert all(e.path.startswith("usr/local/lib/python3.11/dist-packages") or e.type == "dir"
               for e in tree.entries())
    layer_bytes(tree, mtime=0)
