"""The one way to write a fake HTTP server in the tests: a threaded server on 127.0.0.1 (a free port),
answering every request through a route function, a scripted list of replies, or files from a directory,
and recording each request it received.

    with LoopbackHTTPServer(script=[Reply(503), Reply(200, body=b"ok")]) as server:
        fetch(server.url + "/file")
    assert [r.method for r in server.requests] == ["GET", "GET"]

A reply can also wait before answering (`delay`) or reset the connection part-way through its body
(`drop_after`), as slow and failing servers do, or be any bytes at all (`raw`), as a broken server's are;
`tls=(certfile, keyfile)` serves HTTPS; `keep_alive=True` answers in HTTP/1.1 and keeps each connection
open for the next request (`connections` lists the connections accepted, in order). Subclasses that keep
state of their own pass a bound method as the route. The real registry (docker-registry) lives in
oci_registry_server.py.
"""

from __future__ import annotations

import mimetypes
import re
import socket
import ssl
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Mapping


def free_port() -> int:
    """A port nothing listens on right now, for servers that must be told their port (subprocesses)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # as sent: with the query string
    headers: Message  # case-insensitive lookups: headers.get("authorization")
    body: bytes
    received: float  # time.monotonic() when it arrived

    @property
    def route_path(self) -> str:
        """The path without its query string."""
        return self.path.partition("?")[0]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering
    drop_after: int | None = None  # send the headers and this many body bytes, then close the connection
    raw: bytes | None = None  # sent as it is instead of status, headers and body (then the connection closes)


Route = Callable[[Request], Reply]


def scripted(steps: Iterable[Reply | Route]) -> Route:
    """Each request gets the next step's reply (a step is a Reply or a route); the last step answers every
    request after it."""
    remaining = list(steps)
    if not remaining:
        raise ValueError("a script needs at least one step")
    lock = threading.Lock()

    def route(request: Request) -> Reply:
        with lock:
            step = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return step if isinstance(step, Reply) else step(request)

    return route


def file_reply(data: bytes, request: Request, *, ranges: bool = True,
               content_type: str = "application/octet-stream") -> Reply:
    """`data` as a file server sends it: 206 with the asked part for `Range: bytes=A-[B]` or the last N
    bytes for `Range: bytes=-N` (when `ranges`)."""
    asked = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("Range") or "")
    if not (ranges and asked and (asked.group(1) or asked.group(2))):
        return Reply(200, {"Content-Type": content_type}, data)
    if asked.group(1):
        start, end = int(asked.group(1)), min(int(asked.group(2) or len(data) - 1), len(data) - 1)
    else:  # a suffix
        start, end = max(0, len(data) - int(asked.group(2))), len(data) - 1
    if start >= len(data):
        return Reply(416, {"Content-Range": f"bytes */{len(data)}"})
    return Reply(206, {"Content-Type": content_type, "Content-Range": f"bytes {start}-{end}/{len(data)}"},
                 data[start:end + 1])


def serve_directory(directory: Path) -> Route:
    """GET and HEAD of the files under `directory` (Range honoured); 404 for anything else."""
    root = directory.resolve()

    def route(request: Request) -> Reply:
        target = (root / request.route_path.lstrip("/")).resolve()
        if request.method not in ("GET", "HEAD") or not target.is_relative_to(root) or not target.is_file():
            return Reply(404)
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return file_reply(target.read_bytes(), request, content_type=content_type)

    return route


class LoopbackHTTPServer:
    """A threaded HTTP server on 127.0.0.1, serving from construction until close() (or the `with` ends).

    Give exactly one of `route`, `script` or `directory`. `requests` lists what arrived, in order; a route
    that raises answers 500 and leaves its traceback in `route_errors`.
    """

    def __init__(self, route: Route | None = None, *, script: Iterable[Reply | Route] | None = None,
                 directory: Path | None = None, tls: tuple[Path, Path] | None = None,
                 keep_alive: bool = False) -> None:
        chosen = [source for source in (route, script, directory) if source is not None]
        if len(chosen) != 1:
            raise ValueError("give exactly one of route, script or directory")
        self.route: Route = route or (scripted(script) if script is not None else serve_directory(directory))
        self.requests: list[Request] = []
        self.route_errors: list[str] = []
        self.connections: list[tuple[str, int]] = []  # the client address of each connection accepted
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self, keep_alive))
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"{'https' if tls else 'http'}://{self.host}"
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()

    def __enter__(self) -> LoopbackHTTPServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> bool:
        """Whether `count` connections were accepted within `timeout` seconds."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self.connections) >= count, timeout)

    def _record_connection(self, address: tuple[str, int]) -> None:
        with self._lock:
            self.connections.append(address)
            self._lock.notify_all()

    def _record_and_route(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
        try:
            return self.route(request)
        except Exception:  # the test sees a 500 and the traceback, not a silently dropped connection
            self.route_errors.append(traceback.format_exc())
            sys.stderr.write(self.route_errors[-1])  # in pytest's captured output of a failing test
            return Reply(500, {"Content-Type": "text/plain"}, b"the test's route failed")


def _handler_for(server: LoopbackHTTPServer, keep_alive: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def setup(self) -> None:
            super().setup()
            server._record_connection(self.client_address)

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _any(self) -> None:
            request = Request(self.command, self.path, self.headers, self._read_body(), time.monotonic())
            reply = server._record_and_route(request)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.raw is not None:
                self.wfile.write(reply.raw)
                self.wfile.flush()
                self.close_connection = True
                return
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            if not any(key.lower() == "content-length" for key in reply.headers):
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            self.wfile.write(reply.body if reply.drop_after is None else reply.body[:reply.drop_after])
            if reply.drop_after is not None:
                self.wfile.flush()
                self.close_connection = True

        def _read_body(self) -> bytes:
            if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
                return self._read_chunks()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _read_chunks(self) -> bytes:
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _any  # noqa: N815

    return Handler
