"""A tiny package index for tests: wheels built on the spot, served on 127.0.0.1 as PEP 691 JSON
(with sizes and hashes) or PEP 503 HTML (without sizes), like PyPI and like a plain static index."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name


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


class WheelIndex:
    """Serves every file in `directory`: /simple/<project>/ (JSON or HTML by Accept), /html/<project>/
    (always HTML, no sizes), /files/<filename>."""

    def __init__(self, directory: Path, serve_ranges: bool = True) -> None:
        self.directory = directory
        self.serve_ranges = serve_ranges
        self.requests: list[str] = []  # file requests, "range <name>" for range requests
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> WheelIndex:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def project_files(self, project: str) -> list[Path]:
        found = []
        for path in sorted(self.directory.iterdir()):
            stem = path.name.split("-")[0]
            if canonicalize_name(stem) == project:
                found.append(path)
        return found

    def _handler(self):
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def _serve(self, head: bool) -> None:
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                if len(parts) == 2 and parts[0] == "files" and (index.directory / parts[1]).is_file():
                    data = (index.directory / parts[1]).read_bytes()
                    ranged = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                    index.requests.append(("range " if ranged else "") + parts[1])
                    if ranged and index.serve_ranges:
                        start, end = int(ranged.group(1)), int(ranged.group(2))
                        return self._send(206, "application/octet-stream", data[start:end + 1], head)
                    return self._send(200, "application/octet-stream", data, head)
                if len(parts) == 2 and parts[0] in ("simple", "html"):
                    files = index.project_files(canonicalize_name(parts[1]))
                    if not files:
                        return self._send(404, "text/plain", b"not found", head)
                    wants_json = "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", "")
                    if parts[0] == "simple" and wants_json:
                        return self._send(200, "application/vnd.pypi.simple.v1+json", _json_page(parts[1], files), head)
                    return self._send(200, "text/html", _html_page(files), head)
                self._send(404, "text/plain", b"not found", head)

            def _send(self, status: int, content_type: str, body: bytes, head: bool) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        return Handler


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


def _json_page(project: str, files: list[Path]) -> bytes:
    entries = [{"filename": p.name, "url": f"../../files/{p.name}", "hashes": {"sha256": sha256_of(p)},
                "size": p.stat().st_size, "requires-python": _requires_python(p)} for p in files]
    return json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": entries}).encode()


def _html_page(files: list[Path]) -> bytes:
    links = "".join(f'<a href="../../files/{html.escape(p.name)}#sha256={sha256_of(p)}">{html.escape(p.name)}</a>\n'
                    for p in files)
    return f"<!DOCTYPE html><html><body>\n{links}</body></html>".encode()
