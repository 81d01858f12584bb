"""Source distributions as old projects ship them (gputil 1.4.0: setup.py, no pyproject.toml, PKG-INFO of
Metadata-Version 1.1, so the dependencies are known only to setup.py), made on the spot."""

from __future__ import annotations

import io
import tarfile


def setup_py_sdist(name: str, version: str, module: str, install_requires: tuple[str, ...] = ()) -> tuple[str, bytes]:
    """(filename, bytes) of a setup.py-only sdist whose package `name` has `module` as its __init__.py."""
    top = f"{name}-{version}"
    setup_py = (f"from setuptools import setup\n\nsetup(name={name!r}, version={version!r}, packages=[{name!r}], "
                f"install_requires={list(install_requires)!r})\n")
    files = {
        f"{top}/PKG-INFO": f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\n",
        f"{top}/setup.py": setup_py,
        f"{top}/{name}/__init__.py": module,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_600_000_000
            archive.addfile(info, io.BytesIO(data))
    return f"{top}.tar.gz", buffer.getvalue()


def links_page(names: list[str]) -> bytes:
    """A --find-links page listing files served beside it."""
    return ("<html><body>" + "".join(f'<a href="{n}">{n}</a>' for n in names) + "</body></html>").encode()
