"""The resolver's requests for parts of wheels, through connections opened before it asks.

uv reads a wheel's METADATA with a HEAD and a few range requests to the file's host, level after level of
the dependency tree (about 60 wheels for a torch closure). On this project's PyPI mirror a new TLS
connection costs about 20 ms, a HEAD 30-50 ms and a range read on an open connection 2 ms. So the lock's
proxy rewrites a page's file URLs to itself and relays these requests over kept-alive connections opened
as soon as the first page arrived (registry/wire.py); a HEAD becomes one read of the file's tail, which
also answers the reads that follow it. Where the index serves PEP 658 METADATA files (PyPI does), uv asks
for those instead, and the relay passes them on the same way.

The relay only ever shortens the way: anything it does not answer exactly as the host did (a whole file,
an answer other than 200/206, a failure) goes back to the resolver as a redirect to the file's own URL,
which the resolver then asks as it would have without the proxy. The page bytes the lock records are the
index's, unchanged: only the copy sent to the resolver is rewritten.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from .index import Page

if TYPE_CHECKING:
    from ..registry.wire import Answer

RELAY_LIMIT = 16 << 20  # bytes of one relayed answer; a larger one is left to the resolver (a redirect)
METADATA_LIMIT = 4 << 20  # bytes of a PEP 658 METADATA file relayed; a larger one is left to the resolver
TAIL = 128 << 10  # bytes read from a file's end on a HEAD: most wheels' zip directory and METADATA are there
_WARM_CONNECTIONS = 12  # per file host: as many as uv asked at once for the torch closure (10-12)
_TIMEOUTS = (10.0, 60.0)  # connect, read: seconds
_URL_KEY = b'"url": "'
# Request headers passed on: what a range read needs. The answer's Content-Length is this relay's own.
_REQUEST_HEADERS = ("Range", "Accept", "If-Range", "User-Agent")
_ANSWER_HEADERS = ("Content-Type", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified")


class Relayed(NamedTuple):
    """What to send back: status, headers and body, or (status 302) a redirect to `location`."""

    status: int
    headers: dict[str, str]
    body: bytes

    @classmethod
    def redirect(cls, location: str) -> Relayed:
        return cls(302, {"Location": location}, b"")


class FileRelay:
    """File hosts by number (/o/<n>/ on the proxy), learnt from the pages the proxy serves."""

    def __init__(self) -> None:
        self.origins: list[str] = []  # "https://host[:port]/"
        self.tails: dict[str, _Tail] = {}  # by file URL, from HEADs
        self.lock = threading.Lock()

    def rewrite(self, page: Page, proxy_base: str) -> bytes:
        """The page's bytes for the resolver: when every file URL of a PEP 691 page starts with one
        origin, that origin replaced by this relay's; else `page.content` itself, as the index sent it."""
        origin = _single_origin(page)
        if origin is None:
            return page.content
        number = self._number(origin)
        return page.content.replace(_URL_KEY + origin.encode(), _URL_KEY + f"{proxy_base}/o/{number}/".encode())

    def _number(self, origin: str) -> int:
        with self.lock:
            if origin in self.origins:
                return self.origins.index(origin)
            self.origins.append(origin)
            number = len(self.origins) - 1
        from ..registry.wire import warm

        warm(origin, _WARM_CONNECTIONS, timeouts=_TIMEOUTS)
        return number

    def upstream(self, number: int, rest: str) -> str | None:
        """The file host's URL for /o/<number>/<rest>; None for a number it never gave."""
        with self.lock:
            return self.origins[number] + rest if 0 <= number < len(self.origins) else None

    def relay(self, method: str, url: str, header: Callable[[str], str | None]) -> Relayed:
        """The host's answer to a HEAD or a range GET of `url`, or a redirect to it. `header` gives the
        resolver's request header of a name, in any case (http.server's `headers.get`)."""
        if method == "HEAD":
            return self._head(url, header)
        asked = header("Range")
        if asked is None and url.endswith(".metadata"):  # PEP 658: a wheel's METADATA (PyPI has them), small
            answer = _ask(url, _passed(header, ("Accept", "User-Agent")), METADATA_LIMIT)
            if answer is None or answer.truncated or answer.status != 200:
                return Relayed.redirect(url)
            return Relayed(200, _kept_headers(answer), answer.body)
        if asked is None:
            return Relayed.redirect(url)  # a whole file: possibly large, and nothing to win
        kept_tail = self._from_tail(url, asked)
        if kept_tail is not None:
            return kept_tail
        answer = _ask(url, _passed(header, _REQUEST_HEADERS), RELAY_LIMIT)
        if answer is None or answer.truncated or answer.status not in (200, 206):
            return Relayed.redirect(url)
        return Relayed(answer.status, _kept_headers(answer), answer.body)

    def _head(self, url: str, header: Callable[[str], str | None]) -> Relayed:
        """A HEAD answered from a range read of the file's last TAIL bytes: PyPI's file host takes 30-50 ms
        over a HEAD and 2 ms over a range read, whose Content-Range tells the file's length and that ranges
        are served. The tail is kept: the resolver's next reads (the zip's end record, its directory,
        often METADATA) are answered from it."""
        answer = _ask(url, {**_passed(header, ("Accept", "User-Agent")), "Range": f"bytes=-{TAIL}"}, TAIL)
        if answer is None or answer.status not in (200, 206):
            return Relayed.redirect(url)
        kept = _kept_headers(answer)
        if answer.status == 200:  # no ranges served: the whole length, as a HEAD would say
            kept["Content-Length"] = answer.headers.get("Content-Length") or ""
            return Relayed(200, kept, b"") if kept["Content-Length"].isdigit() else Relayed.redirect(url)
        served = _content_range(answer.headers.get("Content-Range"))
        if served is None or served[1] - served[0] + 1 != len(answer.body):
            return Relayed.redirect(url)
        first, _, total = served
        with self.lock:
            self.tails[url] = _Tail(first, total, answer.body)
        kept.pop("Content-Range", None)
        return Relayed(200, {**kept, "Accept-Ranges": "bytes", "Content-Length": str(total)}, b"")

    def _from_tail(self, url: str, asked: str) -> Relayed | None:
        """A range of the kept tail, as the host would send it; None when the tail does not hold it."""
        with self.lock:
            tail = self.tails.get(url)
        wanted = _byte_range(asked, tail.total) if tail is not None else None
        if tail is None or wanted is None or wanted[0] < tail.first:
            return None
        first, last = wanted
        body = tail.data[first - tail.first:last - tail.first + 1]
        return Relayed(206, {"Content-Type": "application/octet-stream",
                             "Content-Range": f"bytes {first}-{last}/{tail.total}"}, body)


class _Tail(NamedTuple):
    first: int  # offset of data's first byte in the file
    total: int  # the file's length
    data: bytes


def _content_range(value: str | None) -> tuple[int, int, int] | None:
    """(first, last, total) of a Content-Range such as `bytes 10-19/100`."""
    unit, _, spec = (value or "").partition(" ")
    span, _, total = spec.partition("/")
    first, _, last = span.partition("-")
    if unit != "bytes" or not (first.isdigit() and last.isdigit() and total.isdigit()):
        return None
    return (int(first), int(last), int(total)) if int(first) <= int(last) < int(total) else None


def _byte_range(value: str, total: int) -> tuple[int, int] | None:
    """(first, last) of a single-range Range header within a file of `total` bytes; None for another form."""
    unit, _, spec = value.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip() != "bytes" or not dash or "," in spec:
        return None
    if not first:  # the last N bytes
        return (max(0, total - int(last)), total - 1) if last.isdigit() and int(last) > 0 else None
    if not first.isdigit() or (last and not last.isdigit()):
        return None
    start, end = int(first), min(int(last) if last else total - 1, total - 1)
    return (start, end) if start <= end else None


def _ask(url: str, headers: dict[str, str], limit: int) -> Answer | None:
    """The host's answer (at most `limit` bytes of its body), unless it failed or came encoded."""
    from ..registry.wire import exchange

    try:
        answer = exchange("GET", url, headers, timeouts=_TIMEOUTS, limit=limit)
    except (OSError, ValueError):
        return None
    return answer if (answer.headers.get("Content-Encoding") or "identity") == "identity" else None


def _passed(header: Callable[[str], str | None], names: tuple[str, ...]) -> dict[str, str]:
    return {name: value for name in names if (value := header(name)) is not None}


def _kept_headers(answer: Answer) -> dict[str, str]:
    return {name: value for name in _ANSWER_HEADERS if (value := answer.headers.get(name)) is not None}


def _single_origin(page: Page) -> str | None:
    """The scheme, host and port that every file URL of a PEP 691 page starts with, if one does (told by
    counting: a page lists up to thousands of files)."""
    content = page.content
    if not page.is_json:
        return None
    start = content.find(_URL_KEY)
    if start < 0:
        return None
    start += len(_URL_KEY)
    scheme_end = content.find(b"://", start, start + 16)
    host_end = content.find(b"/", scheme_end + 3, start + 300) if scheme_end > 0 else -1
    if host_end < 0:
        return None
    origin = content[start:host_end + 1]
    if content[start:scheme_end] not in (b"https", b"http") or b"@" in origin or b'"' in origin or b"\\" in origin:
        return None
    if content.count(_URL_KEY + origin) != content.count(b'"url"'):
        return None
    return origin.decode("ascii", "replace")
