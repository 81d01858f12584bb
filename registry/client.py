"""One registry's HTTP API (OCI distribution spec): auth, retries and clear errors in one place.

The session is a plain requests session that refuses cookies; challenges are answered by
`RegistryAuth` (auth.py, shared with the light client). Requests go through `RegistryClient.request`, which
retries as `http_policy` says (connection failures, 429 honouring Retry-After, 5xx) whenever the body
can be sent again, sends credentials to the registry's own origin only (never to an upload Location or a
redirect elsewhere), and turns any other failure into one sentence naming the registry and repository.
"""

from __future__ import annotations

import re
from http.cookiejar import DefaultCookiePolicy
from typing import Callable, Iterable, Protocol, Union
from urllib.parse import urljoin

import requests

from .errors import RegistryError, refusal

from .auth import RegistryAuth
from .http_policy import RetryPolicy, same_origin
from .reference import is_loopback_host

class Readable(Protocol):
    """What a request body is read from: a file, or a slice of one (transfer._FileSlice)."""

    def read(self, size: int = -1) -> bytes: ...


Body = Union[bytes, Callable[[], Readable], None]


class RegistryClient:
    """Talks to one registry; thread-safe enough to share between upload workers."""

    def __init__(self, registry: str, api_host: str | None = None, *, insecure: bool = False,
                 policy: RetryPolicy | None = None) -> None:
        self.registry = registry
        host = api_host or registry
        self.plain_http = insecure or is_loopback_host(registry)
        self.base = f"{'http' if self.plain_http else 'https'}://{host}/v2/"
        self.session = requests.Session()
        # Some registries (Harbor) set cookies and then expect CSRF tokens as from a browser: keep none.
        self.session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        adapter = _LargeBlockAdapter(pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.auth = RegistryAuth(registry, plain_http=self.plain_http)
        self.policy = policy or RetryPolicy.default()

    def url(self, path: str) -> str:
        return urljoin(self.base, path.lstrip("/"))

    def resolve_location(self, response: requests.Response) -> str:
        """An upload's Location header, made absolute (registries may send a relative one)."""
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.registry} answered an upload without a Location header",
                                response.status_code)
        return urljoin(response.url, location)

    # -- the one request path -------------------------------------------------------------------
    def request(self, method: str, url: str, *, repository: str, action: str,
                ok: Iterable[int] = (200,), headers: dict[str, str] | None = None, body: Body = None,
                stream: bool = False, scope: str | None = None, retry: bool = True) -> requests.Response:
        """Send with auth; retry what is safe to retry; return a response whose status is in `ok`.

        `action` completes "could not … " in error messages (e.g. "push blob sha256:… to").
        """
        scope = scope or _scope(repository, method)
        ok = set(ok)
        attempts = self.policy.attempts if retry else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._send_authenticated(method, url, scope, headers or {}, body, stream)
            except requests.exceptions.SSLError as exc:
                raise RegistryError(
                    f"TLS with registry {self.registry} failed ({_short(exc)}); if it serves plain HTTP, "
                    "pass --insecure") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                if last or (body is not None and not _replayable(body)):
                    raise RegistryError(
                        f"could not {action} {self.registry}/{repository}: the registry is unreachable "
                        f"or dropped the connection ({_short(exc)})") from None
                self.policy.wait(attempt)
                continue
            if response.status_code in ok:
                return response
            if self.policy.retryable_status(response.status_code) and not last and _replayable(body):
                self.policy.wait(attempt, response.headers.get("Retry-After"))
                response.close()
                continue
            raise self.error(response, repository, action, attempts=attempt + 1)
        raise AssertionError("unreachable")

    def _send_authenticated(self, method: str, url: str, scope: str, headers: dict[str, str],
                            body: Body, stream: bool) -> requests.Response:
        if not same_origin(url, self.base):  # storage the registry sends us to: its URL carries the grant
            return self._send(method, url, headers, body, stream)
        sent = {**headers, **self.auth.header_for_scope(scope)}
        response = self._send(method, url, sent, body, stream)
        if response.status_code != 401:
            return response
        challenge = response.headers.get("WWW-Authenticate", "")
        answer = self.auth.answer(challenge, scope, sent) if challenge else None
        if answer is None or not _replayable(body):
            return response
        response.close()
        return self._send(method, url, {**headers, **answer}, body, stream)

    def _send(self, method: str, url: str, headers: dict[str, str], body: Body,
              stream: bool) -> requests.Response:
        data = body() if callable(body) else body
        try:
            return self.session.request(method, url, headers=headers, data=data, stream=stream,
                                        timeout=self.policy.timeouts, allow_redirects=True)
        finally:
            if callable(body) and hasattr(data, "close"):
                data.close()  # type: ignore[union-attr]

    # -- errors ---------------------------------------------------------------------------------
    def error(self, response: requests.Response, repository: str, action: str,
              attempts: int = 1) -> RegistryError:
        try:
            body = response.content
        except requests.exceptions.RequestException:
            body = b""
        response.close()
        return refusal(self.registry, repository, action, response.status_code, response.reason or "", body,
                       has_credentials=self.auth.has_credentials, attempts=attempts)


class _LargeBlockAdapter(requests.adapters.HTTPAdapter):
    """Sends request bodies in 1 MiB reads (urllib3's default 16 KiB costs throughput on big layers)."""

    def init_poolmanager(self, *args, **kwargs):
        kwargs.setdefault("blocksize", 1 << 20)
        super().init_poolmanager(*args, **kwargs)


def _scope(repository: str, method: str) -> str:
    actions = "pull" if method in ("GET", "HEAD") else "pull,push"
    return f"repository:{repository}:{actions}"


def _replayable(body: Body) -> bool:
    return body is None or isinstance(body, bytes) or callable(body)


def _short(exc: BaseException) -> str:
    """The useful part of a requests/urllib3 error, e.g. "Connection refused" rather than its whole chain."""
    text = str(exc)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno:
        return errno.group(1).strip()
    for known in ("Read timed out", "Connection aborted", "Connection reset by peer", "Remote end closed"):
        if known in text:
            return known
    return text if len(text) < 120 else exc.__class__.__name__
