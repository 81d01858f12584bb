"""Fetching over httpx under the one download policy (`registry.http_policy`): retries with backoff for
dropped connections, timeouts, 429 and 5xx; a large download continues where it stopped when the
server honours Range, and starts over cleanly when it does not.

Redirects are followed; httpx drops the Authorization header when one leads to another origin.
Callers check what they fetched (sha256 and size from the lock) once the body is complete.
"""

from __future__ import annotations

import re
from dataclasses import replace

import httpx

from .registry.http_policy import RetryPolicy
from .registry.layout import HashingFile

DOWNLOAD_READ_TIMEOUT = 60.0  # a package server that sends nothing for a minute is retried
_CHUNK = 1 << 20
_CONTENT_RANGE_START = re.compile(r"bytes (\d+)-")


class HTTPStatusFailure(Exception):
    """The server's last answer was a status that is not retried, or retries ran out."""

    def __init__(self, status: int, attempts: int) -> None:
        super().__init__(f"HTTP {status}" + (f" after {attempts} tries" if attempts > 1 else ""))
        self.status = status


def download_policy() -> RetryPolicy:
    return replace(RetryPolicy.default(), read_timeout=DOWNLOAD_READ_TIMEOUT)


def new_client(policy: RetryPolicy | None = None, **options: object) -> httpx.Client:
    """An httpx client with the policy's timeouts, following redirects."""
    policy = policy or download_policy()
    timeout = httpx.Timeout(policy.read_timeout, connect=policy.connect_timeout)
    return httpx.Client(timeout=timeout, follow_redirects=True, **options)  # type: ignore[arg-type]


def get(client: httpx.Client, url: str, *, policy: RetryPolicy | None = None,
        headers: dict[str, str] | None = None) -> httpx.Response:
    """A whole (small) response; transient failures retried. Any final status is returned for the
    caller to judge; a transport error after the last try is raised (httpx.TransportError)."""
    policy = policy or download_policy()
    for attempt in range(policy.attempts):
        last = attempt == policy.attempts - 1
        try:
            response = client.get(url, headers=headers)
        except httpx.TransportError:
            if last:
                raise
            policy.wait(attempt)
            continue
        if last or not policy.retryable_status(response.status_code):
            return response
        policy.wait(attempt, response.headers.get("Retry-After"))
    raise AssertionError("unreachable")


def download(client: httpx.Client, url: str, sink: HashingFile, *, size: int = 0,
             policy: RetryPolicy | None = None) -> None:
    """Write the body of `url` into `sink`, resuming with Range after a dropped connection.

    `size` (0: unknown) stops a resume from asking past the end. Raises HTTPStatusFailure for a
    status that is not retried (or when retries ran out), httpx.TransportError when the connection
    kept failing.
    """
    policy = policy or download_policy()
    for attempt in range(policy.attempts):
        last = attempt == policy.attempts - 1
        resuming = sink.size > 0 and (size == 0 or sink.size < size)
        headers = {"Range": f"bytes={sink.size}-"} if resuming else {}
        try:
            with client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == 200 or (status == 206 and resuming and _starts_at(response, sink.size)):
                    if status == 200:
                        sink.reset()  # the whole file again (a server that ignores Range): drop what we had
                    for chunk in response.iter_bytes(_CHUNK):
                        sink.write(chunk)
                    return
                if resuming and status in (206, 416) and not last:
                    sink.reset()  # the server will not continue here: start over
                    continue
                if last or not policy.retryable_status(status):
                    raise HTTPStatusFailure(status, attempt + 1)
                policy.wait(attempt, response.headers.get("Retry-After"))
        except httpx.TransportError:
            if last:
                raise
            policy.wait(attempt)
    raise AssertionError("unreachable")


def _starts_at(response: httpx.Response, offset: int) -> bool:
    match = _CONTENT_RANGE_START.match(response.headers.get("Content-Range", ""))
    return bool(match) and int(match.group(1)) == offset
