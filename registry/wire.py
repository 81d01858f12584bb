"""One HTTP exchange with the standard library only: what the light client and token requests send.

Importing requests and urllib3 costs ~0.3 s; a command that only asks a registry a few questions
(is this tag there, is this cache entry there) answers sooner with `http.client`. Connections are kept
per thread and per origin, so many lookups on a worker thread share one. Nothing here knows about
credentials or retries: `light.py` and `auth.py` decide those.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from dataclasses import dataclass
from email.message import Message
from functools import lru_cache
from urllib.parse import urlsplit

_connections = threading.local()  # (scheme, netloc) -> a kept-alive connection of this thread


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: Message  # case-insensitive
    body: bytes
    truncated: bool  # the body was longer than the caller's limit; only the limit was read


def exchange(method: str, url: str, headers: dict[str, str], *, timeouts: tuple[float, float],
             limit: int, tls_verify: bool = True) -> Answer:
    """Send a body-less request and read at most `limit` bytes of the answer.

    OSError and http.client.HTTPException pass to the caller. A kept-alive connection that the server
    closed meanwhile is retried once on a fresh one, before anything could have been processed twice.
    """
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    origin = (parts.scheme, parts.netloc)
    pool: dict = _connections.__dict__.setdefault("pool", {})
    reused = origin in pool
    for fresh in ((False, True) if reused else (True,)):
        if fresh:
            pool[origin] = _connect(parts.scheme, parts.netloc, timeouts, tls_verify)
        connection = pool[origin]
        try:
            connection.request(method, target or "/", headers=headers)
            response = connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            pool.pop(origin).close()
            if fresh:
                raise
            continue
        except BaseException:
            pool.pop(origin).close()
            raise
        return _read(response, limit, pool, origin)
    raise AssertionError("unreachable")


def _read(response: http.client.HTTPResponse, limit: int, pool: dict, origin: tuple) -> Answer:
    try:
        body = response.read(limit + 1)  # a HEAD answer has no body: b""
    except BaseException:
        pool.pop(origin).close()
        raise
    truncated = len(body) > limit
    if truncated or response.will_close or not response.isclosed():
        pool.pop(origin).close()  # the rest of a long body is not worth reading: the connection goes instead
    return Answer(response.status, response.reason, response.headers, body[:limit], truncated)


def _connect(scheme: str, netloc: str, timeouts: tuple[float, float],
             tls_verify: bool) -> http.client.HTTPConnection:
    connect_timeout, read_timeout = timeouts
    if scheme == "https":
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            netloc, timeout=connect_timeout, context=_tls_context(tls_verify))
    elif scheme == "http":
        connection = http.client.HTTPConnection(netloc, timeout=connect_timeout)
    else:
        raise ValueError(f"cannot send a request to a {scheme!r} URL")
    connection.connect()
    if connection.sock is not None:
        connection.sock.settimeout(read_timeout)
    return connection


@lru_cache(maxsize=2)
def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
