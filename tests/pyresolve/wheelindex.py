"""A tiny package index for tests: wheels built on the spot, served on 127.0.0.1 as PEP 691 JSON
(with sizes and hashes) or PEP 503 HTML (without sizes), like PyPI and like a plain static index."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from http_server import LoopbackHTTPServer, Reply, Request, file_reply


@dataclass
class Dist:
    name: str
    version: str
    # May be a compressed tag set, e.g. cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.
    tag: str = "py3-none-any"
    requires: list[str] = field(default_factory=list)
    requires_python: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.name.replace('-', '_')}-{self.version}-{self.tag}.whl"


def build_wheel(directory: Path, dist: Dist) -> Path:
    """A minimal valid wheel: one module and a dist-info with METADATA, WHEEL and RECORD."""
    distinfo = f"{dist.name.replace('-', '_')}-{dist.version}.dist-info"
    metadata = ["Metadata-Version: 2.1", f"Name: {dist.name}", f"Version: {dist.version}"]
    if dist.requires_python:
        metadata.append(f"Requires-Python: {dist.requires_python}")
    metadata += [f"Requires-Dist: {r}" for r in dist.requires]
    extras = sorted({r.split("extra ==")[1].strip().strip("\"'") for r in dist.requires if "extra ==" in r})
    metadata += [f"Provides-Extra: {e}" for e in extras]
    files = {
        f"{dist.name.replace('-', '_')}.py": f"VERSION = {dist.version!r}\n",
        f"{distinfo}/METADATA": "\n".join(metadata) + "\n",
        f"{distinfo}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {dist.tag}\n",
    }
    record = [f"{path},sha256={_urlsafe_digest(text.encode())},{len(text.encode())}" for path, text in files.items()]
    files[f"{distinfo}/RECORD"] = "\n".join(record + [f"{distinfo}/RECORD,,"]) + "\n"
    path = directory / dist.filename
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0)), text)
    return path


def build_sdist(directory: Path, name: str, version: str, metadata_version: str = "2.1",
                requires: tuple[str, ...] = (), dynamic: tuple[str, ...] = ()) -> Path:
    """An sdist with just PKG-INFO: enough for tools that read metadata and never build."""
    import tarfile

    path = directory / f"{name}-{version}.tar.gz"
    lines = [f"Metadata-Version: {metadata_version}", f"Name: {name}", f"Version: {version}"]
    lines += [f"Dynamic: {field}" for field in dynamic] + [f"Requires-Dist: {r}" for r in requires]
    with tarfile.open(path, "w:gz") as archive:
        data = ("\n".join(lines) + "\n").encode()
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def _urlsafe_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class WheelIndex(LoopbackHTTPServer):
    """Serves every file in `directory`: /simple/<project>/ (JSON or HTML by Accept), /html/<project>/
    (always HTML, no sizes), /files/<filename>. Pages link files relatively (../../files/<filename>), or
    by absolute URL with absolute_urls, as PyPI does."""

    def __init__(self, directory: Path, serve_ranges: bool = True, absolute_urls: bool = False) -> None:
        self.directory = directory
        self.serve_ranges = serve_ranges
        self.absolute_urls = absolute_urls
        super().__init__(self._answer)

    def file_requests(self) -> list[str]:
        """The file names asked for, in order; "range <name>" for a request with a Range header."""
        return [("range " if request.headers.get("Range") else "") + request.route_path.removeprefix("/files/")
                for request in self.requests if request.route_path.startswith("/files/")]

    def project_files(self, project: str) -> list[Path]:
        found = []
        for path in sorted(self.directory.iterdir()):
            stem = path.name.split("-")[0]
            if canonicalize_name(stem) == project:
                found.append(path)
        return found

    def _answer(self, request: Request) -> Reply:
        parts = [p for p in request.route_path.split("/") if p]
        if len(parts) == 2 and parts[0] == "files" and (self.directory / parts[1]).is_file():
            return file_reply((self.directory / parts[1]).read_bytes(), request, ranges=self.serve_ranges)
        if len(parts) == 2 and parts[0] in ("simple", "html"):
            files = self.project_files(canonicalize_name(parts[1]))
            if not files:
                return Reply(404, {"Content-Type": "text/plain"}, b"not found")
            files_url = f"{self.url}/files/" if self.absolute_urls else "../../files/"
            if parts[0] == "simple" and "application/vnd.pypi.simple.v1+json" in request.headers.get("Accept", ""):
                return Reply(200, {"Content-Type": "application/vnd.pypi.simple.v1+json"},
                             _json_page(parts[1], files, files_url))
            return Reply(200, {"Content-Type": "text/html"}, _html_page(files, files_url))
        return Reply(404, {"Content-Type": "text/plain"}, b"not found")


def _requires_python(path: Path) -> str | None:
    """What PyPI puts in requires-python: the wheel's own Requires-Python."""
    if not path.name.endswith(".whl"):
        return None
    with zipfile.ZipFile(path) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        for line in archive.read(metadata).decode().splitlines():
            if line.startswith("Requires-Python:"):
                return line.split(":", 1)[1].strip()
    return None


def _json_page(project: str, files: list[Path], files_url: str) -> bytes:
    entries = [{"filename": p.name, "url": f"{files_url}{p.name}", "hashes": {"sha256": sha256_of(p)},
                "size": p.stat().st_size, "requires-python": _requires_python(p)} for p in files]
    return json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": entries}).encode()


def _html_page(files: list[Path], files_url: str) -> bytes:
    links = "".join(f'<a href="{html.escape(files_url + p.name)}#sha256={sha256_of(p)}">{html.escape(p.name)}</a>\n'
                    for p in files)
    return f"<!DOCTYPE html><html><body>\n{links}</body></html>".encode()
