"""One policy for everything cogbuild fetches over HTTP: when to retry, how long to wait, timeouts, and
which host may see credentials.

Both HTTP stacks follow it: the registry client (requests) and the downloads of .debs, wheels, Python
tarballs and index pages (httpx, `cogbuild.http_fetch`). It lives here, beside the registry client,
because `registry/` may not import `cogbuild/`, while `cogbuild/` may import `registry/`; it imports
neither HTTP library, so reading it costs nothing at start-up.

Retried: failed or dropped connections, timeouts, 429 (waiting at least what Retry-After asks, up to
a minute) and 500/502/503/504. Never retried: any other status (a 404 will not turn into a 200).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 5  # per request, counting the first
BACKOFF = 0.5  # seconds before the first retry; doubles each time, plus up to half again of jitter
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is a reason to give up, not to hang
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 300.0  # a registry may take long to commit a large blob
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int
    backoff: float
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT

    @classmethod
    def default(cls) -> RetryPolicy:
        """The module's settings as they are now (tests shorten BACKOFF)."""
        return cls(ATTEMPTS, BACKOFF)

    def with_attempts(self, attempts: int) -> RetryPolicy:
        return replace(self, attempts=attempts)

    @property
    def timeouts(self) -> tuple[float, float]:
        """(connect, read) in seconds, as requests takes them."""
        return self.connect_timeout, self.read_timeout

    @staticmethod
    def retryable_status(status: int) -> bool:
        return status in RETRYABLE_STATUSES

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        import random  # only a retry needs it, not the questions of an unchanged push

        delay = self.backoff * (2 ** attempt) * (1 + random.random() / 2)
        asked = _retry_after_seconds(retry_after)
        return max(delay, min(asked, MAX_RETRY_AFTER)) if asked is not None else delay

    def wait(self, attempt: int, retry_after: str | None = None) -> None:
        time.sleep(self.delay(attempt, retry_after))


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 allows both)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime  # only a date-valued header needs it

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def same_origin(url: str, other: str) -> bool:
    """Same scheme, host and port: only then may a request carry the other URL's credentials.

    Registries send blob uploads and downloads to storage elsewhere (S3, a CDN) with signed URLs;
    like docker and containerd, cogbuild sends the registry's Authorization to the registry only.
    """
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.hostname, _port(a.scheme, a.port)) == (b.scheme, b.hostname, _port(b.scheme, b.port))


def _port(scheme: str, port: int | None) -> int | None:
    return port if port is not None else _DEFAULT_PORTS.get(scheme)
