"""A wheel built in the image is rewritten so that its bytes depend on its members alone."""

from __future__ import annotations

import io
import zipfile

from cogbuild.layers.wheel import normalize_wheel


def wheel_bytes(order: list[str], date: tuple, mode: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in order:
            info = zipfile.ZipInfo(name, date)
            info.external_attr = mode << 16
            archive.writestr(info, name.encode())
    return out.getvalue()


def test_a_built_wheel_is_normalised_to_bytes_that_depend_on_its_members_only():
    names = ["pkg/__init__.py", "pkg-1.0.dist-info/RECORD", "pkg-1.0.dist-info/METADATA", "pkg/tool.py"]
    first = normalize_wheel(wheel_bytes(names, (2024, 5, 1, 12, 0, 0), 0o100664), 0)
    second = normalize_wheel(wheel_bytes(list(reversed(names)), (2026, 1, 2, 3, 4, 6), 0o100600), 0)
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert archive.namelist() == ["pkg/__init__.py", "pkg/tool.py", "pkg-1.0.dist-info/METADATA",
                                      "pkg-1.0.dist-info/RECORD"]
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in archive.infolist()} == {0o100644}
        assert archive.read("pkg/tool.py") == b"pkg/tool.py"
    later = normalize_wheel(wheel_bytes(names, (2024, 5, 1, 12, 0, 0), 0o100755), 1_700_000_000)
    with zipfile.ZipFile(io.BytesIO(later)) as archive:
        assert {i.date_time for i in archive.infolist()} == {(2023, 11, 14, 22, 13, 20)}
        assert {i.external_attr >> 16 for i in archive.infolist()} == {0o100755}
