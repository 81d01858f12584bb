"""One HTTP/1.1 exchange on a socket: what the light client and token requests send.

A command that only asks a registry a few questions (is this tag there, is this cache entry there) must
answer at once. requests and urllib3 cost ~0.3 s to import; even http.client costs more than the questions,
since it imports the email package to parse headers (with ssl, 40 % of the imports of an unchanged push,
issue 15). The questions are body-less requests, and their answers need only a status, a few headers and
a short body, so this module reads HTTP/1.1 itself: a status line, header lines, and a body framed by
`Transfer-Encoding: chunked`, `Content-Length` or the end of the connection (RFC 9112, section 6.3).
TLS is the ssl module's, with certificate and host name checks, loaded only for https. Connections are
kept alive in one pool per origin, shared by all threads, and `warm` opens some ahead of the requests:
against an index whose TLS handshake takes 50 ms and whose answers take 2 ms, the handshakes are most of
a lock's time. Nothing here knows about credentials or retries: `light.py` and `auth.py` decide those.
"""

from __future__ import annotations

import socket
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, BinaryIO, NamedTuple
from urllib.parse import SplitResult, urlsplit

if TYPE_CHECKING:
    import ssl

MAX_LINE = 65536  # a status or header line longer than this is refused (as http.client does)
MAX_HEADERS = 100
NO_BODY_STATUSES = frozenset({204, 304})
HEX_DIGITS = b"0123456789abcdefABCDEF"


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.x as RFC 9112 frames it; handled like a dropped connection."""


class Headers(dict[str, str]):
    """Header fields by lower-case name (the first of repeated ones); `get` takes any case."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: Headers  # case-insensitive
    body: bytes
    truncated: bool  # the body was longer than the caller's limit; only the limit was read


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: BinaryIO = sock.makefile("rb")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def exchange(method: str, url: str, headers: dict[str, str], *, timeouts: tuple[float, float],
             limit: int, tls_verify: bool = True) -> Answer:
    """Send a body-less request and read at most `limit` bytes of the answer.

    OSError (ProtocolError for an answer that is not HTTP) passes to the caller. A kept-alive connection
    that the server closed meanwhile is retried once on a fresh one, before anything could have been
    processed twice.
    """
    parts = urlsplit(url)
    request = _request_bytes(method, parts.path + (f"?{parts.query}" if parts.query else ""), parts.netloc,
                             headers)
    origin = _Origin(parts.scheme, parts.hostname or "", _port(parts), parts.netloc, tls_verify)
    connection = _pool.take(origin, timeouts[0])
    for fresh in ((True,) if connection is None else (False, True)):
        if fresh:
            connection = _connect(origin, timeouts)
        assert connection is not None
        try:
            connection.sock.sendall(request)
            status, reason, fields, version = _read_head(connection.reader)
        except (ConnectionResetError, BrokenPipeError):  # closed while kept alive: a fresh one is tried
            connection.close()
            if fresh:
                raise
            continue
        except BaseException:
            connection.close()
            raise
        try:
            body, truncated, keep = _read_body(connection.reader, method, status, fields, version, limit)
        except BaseException:
            connection.close()
            raise
        if keep:
            _pool.give(origin, connection)
        else:
            connection.close()  # the rest of a long body is not worth reading: the connection goes instead
        return Answer(status, reason, fields, body, truncated)
    raise AssertionError("unreachable")


def warm(url: str, count: int, *, timeouts: tuple[float, float], tls_verify: bool = True) -> None:
    """Open up to `count` connections to `url`'s origin in the background, for requests soon to come:
    a request finds one of them idle, or waits for one still opening rather than open its own. A
    connection that cannot be opened is left out; the request that needs it then says why."""
    parts = urlsplit(url)
    origin = _Origin(parts.scheme, parts.hostname or "", _port(parts), parts.netloc, tls_verify)
    for _ in range(_pool.reserve(origin, count)):
        threading.Thread(target=_pool.open_ahead, args=(origin, timeouts), daemon=True).start()


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int
    netloc: str
    tls_verify: bool


class _Pool:
    """Idle kept-alive connections by origin, and how many `warm` is still opening."""

    def __init__(self) -> None:
        self.idle: dict[_Origin, list[_Connection]] = {}
        self.opening: dict[_Origin, int] = {}
        self.changed = threading.Condition()

    def take(self, origin: _Origin, wait: float) -> _Connection | None:
        """An idle connection, waiting up to `wait` seconds for one still opening; None: open your own."""
        with self.changed:
            self.changed.wait_for(lambda: self.idle.get(origin) or not self.opening.get(origin), wait)
            idle = self.idle.get(origin)
            return idle.pop() if idle else None

    def give(self, origin: _Origin, connection: _Connection) -> None:
        with self.changed:
            self.idle.setdefault(origin, []).append(connection)
            self.changed.notify_all()  # one condition for all origins: a waiter of this one must wake

    def reserve(self, origin: _Origin, count: int) -> int:
        """How many more to open so that `count` are idle or opening."""
        with self.changed:
            more = max(0, count - len(self.idle.get(origin, ())) - self.opening.get(origin, 0))
            self.opening[origin] = self.opening.get(origin, 0) + more
            return more

    def open_ahead(self, origin: _Origin, timeouts: tuple[float, float]) -> None:
        try:
            connection: _Connection | None = _connect(origin, timeouts)
        except (OSError, ValueError):
            connection = None
        with self.changed:
            self.opening[origin] -= 1
            if connection is not None:
                self.idle.setdefault(origin, []).append(connection)
            self.changed.notify_all()


_pool = _Pool()


def is_tls_failure(exc: BaseException) -> bool:
    """Whether `exc` is a TLS failure (ssl is loaded only once an https connection was tried)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLError)


def _request_bytes(method: str, target: str, netloc: str, headers: dict[str, str]) -> bytes:
    """The request's bytes; a control character or space where it would change the request is refused."""
    target = target or "/"
    if any(c <= " " or c == "\x7f" for c in method + target) or any(
            c in part for part in (netloc, *headers, *headers.values()) for c in "\r\n\x00"):
        raise ValueError(f"refusing to send {method} {target!r}: a control character in its request line or header")
    fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = f"{method} {target} HTTP/1.1\r\n".encode("ascii")
    return head + f"Host: {netloc}\r\nAccept-Encoding: identity\r\n{fields}\r\n".encode("latin-1")


def _port(parts: SplitResult) -> int:
    try:
        port = parts.port
    except ValueError:
        raise ProtocolError(f"{parts.netloc!r} has no valid port") from None
    return port or (443 if parts.scheme == "https" else 80)


def _connect(origin: _Origin, timeouts: tuple[float, float]) -> _Connection:
    scheme, host, port, _, tls_verify = origin
    if scheme not in ("http", "https"):
        raise ValueError(f"cannot send a request to a {scheme!r} URL")
    connect_timeout, read_timeout = timeouts
    # An ASCII name is passed as bytes (getaddrinfo takes both; typeshed says str): a str makes the socket
    # module load the IDNA codec to encode it, a few milliseconds of an unchanged push.
    lookup = host.encode() if host.isascii() else host
    trusts: tuple[str | None, ...] = (None,) if scheme == "http" else \
        ("none",) if not tls_verify else ("directory", "all")
    for trust in trusts:
        sock = socket.create_connection((lookup, port), timeout=connect_timeout)  # type: ignore[arg-type]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small requests go out at once
            if trust is not None:
                sock = _tls_context(trust).wrap_socket(sock, server_hostname=host)
            sock.settimeout(read_timeout)
        except BaseException as exc:
            sock.close()
            if trust == "directory" and _is_unverified(exc):
                continue  # a CA only in the CA file, not the directory: the whole store decides
            raise
        return _Connection(sock)
    raise AssertionError("unreachable")


def _is_unverified(exc: BaseException) -> bool:
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLCertVerificationError)


def _tls_context(trust: str) -> ssl.SSLContext:
    # One at a time: threads connecting at once would each load the CA store (30-50 ms of CPU each).
    with _tls_context_lock:
        return _new_tls_context(trust)


_tls_context_lock = threading.Lock()


@lru_cache(maxsize=3)
def _new_tls_context(trust: str) -> ssl.SSLContext:
    """The TLS settings of Python's default context, trusting: "all" the default CA file and directory
    (SSL_CERT_FILE, SSL_CERT_DIR or OpenSSL's), "directory" the CA directory alone, "none" nothing
    (no certificate check). Loading the CA file parses every certificate in it (140 here, 30-50 ms); the
    directory is hashed by subject and read only for the CA a server's chain names (0.4 ms). A connection
    tries the directory first and the whole store when that cannot verify the server, so it trusts what
    the default context trusts, no less and no more."""
    import ssl

    directory = ssl.get_default_verify_paths().capath
    if trust == "all" or (trust == "directory" and not directory):
        return ssl.create_default_context()
    context = ssl.create_default_context(capath=directory)
    if trust == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise ProtocolError("the server sent a line longer than 64 KiB")
    return line


def _read_head(reader: BinaryIO) -> tuple[int, str, Headers, str]:
    """Status, reason, header fields and HTTP version of the final answer (1xx answers are skipped)."""
    while True:
        line = _line(reader)
        if not line:
            raise ConnectionResetError("the server closed the connection without answering")
        version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not (version.startswith("HTTP/1.") and len(code) == 3 and code.isdigit()):
            raise ProtocolError(f"the server answered {line[:40]!r}, not HTTP/1.x")
        fields = _read_fields(reader)
        if not code.startswith("1"):
            return int(code), reason.strip(), fields, version


def _read_fields(reader: BinaryIO) -> Headers:
    fields = Headers()
    name = ""
    for _ in range(MAX_HEADERS + 1):
        line = _line(reader).decode("latin-1")
        if line in ("\r\n", "\n"):
            return fields
        if not line:
            raise ProtocolError("the server closed the connection within the header")
        if line[0] in " \t" and name:  # an obsolete folded continuation of the previous field
            fields[name] = f"{fields[name]} {line.strip()}"
            continue
        field, colon, value = line.partition(":")
        name = field.strip().lower()
        if not colon or not name or field != field.rstrip():
            raise ProtocolError(f"the server sent a malformed header line {line[:40]!r}")
        fields.setdefault(name, value.strip())
    raise ProtocolError(f"the server sent more than {MAX_HEADERS} header lines")


def _read_body(reader: BinaryIO, method: str, status: int, fields: Headers, version: str,
               limit: int) -> tuple[bytes, bool, bool]:
    """The body (at most `limit` bytes), whether it was longer, and whether the connection can be kept."""
    connection = (fields.get("Connection") or "").lower()
    keep = "close" not in connection if version != "HTTP/1.0" else "keep-alive" in connection
    if method == "HEAD" or status in NO_BODY_STATUSES:
        return b"", False, keep
    codings = fields.get("Transfer-Encoding")
    if codings is not None:
        if codings.rsplit(",", 1)[-1].strip().lower() != "chunked":
            return _until_close(reader, limit)
        body, complete = _read_chunked(reader, limit)
        return body[:limit], not complete, keep and complete
    length = fields.get("Content-Length")
    if length is None:
        return _until_close(reader, limit)
    if not (length.isascii() and length.strip().isdigit()):
        raise ProtocolError(f"the server sent Content-Length {length[:20]!r}")
    size = int(length)
    body = reader.read(min(size, limit + 1))
    if len(body) < min(size, limit + 1):
        raise ProtocolError(f"the server closed the connection after {len(body)} of {size} bytes")
    return body[:limit], size > limit, keep and size <= limit


def _until_close(reader: BinaryIO, limit: int) -> tuple[bytes, bool, bool]:
    body = reader.read(limit + 1)
    return body[:limit], len(body) > limit, False


def _read_chunked(reader: BinaryIO, limit: int) -> tuple[bytes, bool]:
    """The chunks' data up to `limit` + 1 bytes, and whether the last chunk and the trailer were read."""
    body = bytearray()
    while len(body) <= limit:
        size_text = _line(reader).split(b";", 1)[0].strip()
        if not size_text or size_text.translate(None, HEX_DIGITS):
            raise ProtocolError(f"the server sent a chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            _read_fields(reader)  # the trailer, up to the empty line
            return bytes(body), True
        chunk = reader.read(size)
        if len(chunk) < size or _line(reader) not in (b"\r\n", b"\n"):
            raise ProtocolError("the server closed the connection within a chunk")
        body += chunk
    return bytes(body), False
