"""A loopback HTTP server for files the test puts in a dict; it counts requests per path and keeps what
is POSTed to it (answering 201), as an API a client writes to would."""

from __future__ import annotations

import threading
from collections import Counter
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StaticServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}  # path -> Content-Type (pip reads find-links pages as text/html)
        self.hits: Counter[str] = Counter()
        self.posts: list[tuple[str, Message, bytes]] = []  # (path, headers (case-insensitive), body)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.hits[self.path] += 1
                data = self._head()
                if data is not None:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:  # noqa: N802
                self._head()

            def _head(self) -> bytes | None:
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return None
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                if self.path in server.content_types:
                    self.send_header("Content-Type", server.content_types[self.path])
                self.end_headers()
                return data

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.posts.append((self.path, self.headers, body))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> "StaticServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
