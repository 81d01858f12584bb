"""A loopback HTTP server for files the test puts in a dict; it counts GETs per path and keeps what is
POSTed to it (answering 201), as an API a client writes to would."""

from __future__ import annotations

from collections import Counter
from email.message import Message

from http_server import LoopbackHTTPServer, Reply, Request


class StaticServer(LoopbackHTTPServer):
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # request path (query included) -> body
        self.content_types: dict[str, str] = {}  # path -> Content-Type (pip reads find-links pages as text/html)
        super().__init__(self._answer)

    def _answer(self, request: Request) -> Reply:
        if request.method == "POST":
            return Reply(201)
        data = self.files.get(request.path)
        if request.method not in ("GET", "HEAD") or data is None:
            return Reply(404)
        content_type = self.content_types.get(request.path)
        return Reply(200, {"Content-Type": content_type} if content_type else {}, data)

    @property
    def hits(self) -> Counter[str]:
        """GET requests per path."""
        return Counter(request.path for request in self.requests if request.method == "GET")

    @property
    def posts(self) -> list[tuple[str, Message, bytes]]:
        """(path, headers (case-insensitive), body) of each POST, in order."""
        return [(request.path, request.headers, request.body) for request in self.requests
                if request.method == "POST"]
