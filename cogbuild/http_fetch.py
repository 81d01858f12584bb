"""Fetching over httpx under the one download policy (`registry.http_policy`): retries with backoff for
dropped connections, timeouts, 429 and 5xx; a large download continues where it stopped when the
server honours Range, and starts over cleanly when it does not.

Redirects are followed; httpx drops the Authorization header when one leads to another origin.
Callers check what they fetched (sha256 and size from the lock) once the body is complete.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Callable, TypeVar

import httpx

from .registry.http_policy import RetryPolicy
from .registry.layout import HashingFile

DOWNLOAD_READ_TIMEOUT = 60.0  # a package server that sends nothing for a minute is retried
_CHUNK = 1 << 20
_CONTENT_RANGE_START = re.compile(r"bytes (\d+)-")


T = TypeVar("T")


class HTTPStatusFailure(httpx.HTTPError):
    """The server's last answer was a status that is not retried, or retries ran out; an httpx.HTTPError,
    so callers that report failed fetches already say "…: HTTP 503 after 5 tries"."""

    def __init__(self, status: int, attempts: int = 1) -> None:
        super().__init__(f"HTTP {status}" + (f" after {attempts} tries" if attempts > 1 else ""))
        self.status = status


class _Retryable(Exception):
    """An answer worth asking again for (429, 5xx, or a resume the server would not continue)."""

    def __init__(self, status: int, retry_after: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


def download_policy() -> RetryPolicy:
    return replace(RetryPolicy.default(), read_timeout=DOWNLOAD_READ_TIMEOUT)


def new_client(policy: RetryPolicy | None = None, **options: Any) -> httpx.Client:
    """An httpx client with the policy's timeouts, following redirects."""
    policy = policy or download_policy()
    timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
    return httpx.Client(timeout=timeout, follow_redirects=True, **options)


def retrying(attempt_once: Callable[[], T], policy: RetryPolicy | None = None) -> T:
    """Run one attempt (a request and the reading of its answer) as often as the policy allows.

    `attempt_once` calls `raise_if_retryable(response)` on each answer; a transport error (no
    connection, a timeout, a connection dropped mid-body) is retried too.
    """
    policy = policy or download_policy()
    for attempt in range(policy.attempts):
        last = attempt == policy.attempts - 1
        try:
            return attempt_once()
        except _Retryable as answer:
            if last:
                raise HTTPStatusFailure(answer.status, policy.attempts) from None
            policy.wait(attempt, answer.retry_after)
        except httpx.TransportError:
            if last:
                raise
            policy.wait(attempt)
    raise AssertionError("unreachable")


def raise_if_retryable(response: httpx.Response) -> None:
    if RetryPolicy.retryable_status(response.status_code):
        raise _Retryable(response.status_code, response.headers.get("Retry-After"))


def get(client: httpx.Client, url: str, *, headers: dict[str, str] | None = None, method: str = "GET",
        policy: RetryPolicy | None = None) -> httpx.Response:
    """A whole (small) response, transient failures retried; the final status is the caller's to judge
    (also a 503 once retries ran out)."""
    answers: list[httpx.Response] = []

    def once() -> httpx.Response:
        answers.append(client.request(method, url, headers=headers))
        raise_if_retryable(answers[-1])
        return answers[-1]

    try:
        return retrying(once, policy)
    except HTTPStatusFailure:
        return answers[-1]


def download(client: httpx.Client, url: str, sink: HashingFile, *, size: int = 0,
             policy: RetryPolicy | None = None) -> None:
    """Write the body of `url` into `sink`, resuming with Range after a dropped connection.

    `size` (0: unknown) stops a resume from asking past the end. Raises httpx.HTTPError (an
    HTTPStatusFailure for a status) once the policy gives up.
    """
    def once() -> None:
        resuming = sink.size > 0 and (size == 0 or sink.size < size)
        headers = {"Range": f"bytes={sink.size}-"} if resuming else {}
        with client.stream("GET", url, headers=headers) as response:
            status = response.status_code
            if status == 200:
                sink.reset()  # the whole file (again, from a server that ignores Range)
            elif not (status == 206 and resuming and _starts_at(response, sink.size)):
                if resuming and status in (206, 416):
                    sink.reset()  # the server will not continue here: start over
                    raise _Retryable(status)
                raise_if_retryable(response)
                raise HTTPStatusFailure(status)
            for chunk in response.iter_bytes(_CHUNK):
                sink.write(chunk)

    retrying(once, policy)


def _starts_at(response: httpx.Response, offset: int) -> bool:
    match = _CONTENT_RANGE_START.match(response.headers.get("Content-Range", ""))
    return match is not None and int(match.group(1)) == offset
