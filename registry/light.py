"""A registry client for questions only (HEAD/GET of manifests, HEAD of blobs), on the standard library.

`cogbuild push` of an unchanged image and the lookups of `build --cache` ask a registry a few questions
and upload nothing; loading requests and urllib3 for that costs more than the questions. This client
follows the full client's rules (client.py): the same credentials and challenges (auth.py), the same retry
policy (http_policy.py), credentials to the registry's own origin only, plain HTTP only to a loopback
registry or with --insecure, and the same one-sentence errors. Anything that sends a body belongs to the
full client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urljoin

from cogbuild.layers.descriptor import sha256_digest
from cogbuild.layers.imagegraph import GRAPH_TYPES

from .auth import RegistryAuth
from .errors import RegistryError, refusal
from .http_policy import RetryPolicy, same_origin
from .reference import is_loopback_host
from .wire import Answer, Headers, exchange, is_tls_failure

ACCEPT_MANIFESTS = ", ".join(GRAPH_TYPES)  # OCI and Docker manifests and indexes
MANIFEST_MAX = 4 << 20  # what distribution itself accepts for a manifest
REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Manifest:
    data: bytes  # exactly as received, verified against the digest asked for or announced
    media_type: str  # as the registry declared it (Content-Type)
    digest: str


class LightClient:
    """Asks one registry questions; thread-safe (threads share wire.py's kept-alive connections)."""

    def __init__(self, registry: str, api_host: str | None = None, *, insecure: bool = False,
                 policy: RetryPolicy | None = None) -> None:
        self.registry = registry
        self.plain_http = insecure or is_loopback_host(registry)
        self.base = f"{'http' if self.plain_http else 'https'}://{api_host or registry}/v2/"
        self.auth = RegistryAuth(registry, plain_http=self.plain_http)
        self.policy = policy or RetryPolicy.default()

    # -- questions ------------------------------------------------------------------------------
    def manifest_digest(self, repository: str, reference: str, accept: str = ACCEPT_MANIFESTS) -> str | None:
        """The digest the registry announces for a tag or digest (one HEAD), or None when it has none."""
        answer = self.ask("HEAD", repository, f"manifests/{reference}", f"check manifest {reference} in",
                          accept=accept)
        return answer.headers.get("Docker-Content-Digest") if answer is not None else None

    def manifest(self, repository: str, reference: str, accept: str = ACCEPT_MANIFESTS) -> Manifest | None:
        """The manifest or index a tag or digest names, verified; None when the registry has none."""
        answer = self.ask("GET", repository, f"manifests/{reference}", f"fetch manifest {reference} from",
                          accept=accept, limit=MANIFEST_MAX)
        if answer is None:
            return None
        digest = sha256_digest(answer.body)
        expected = reference if reference.startswith("sha256:") else answer.headers.get("Docker-Content-Digest")
        if expected and expected != digest:
            raise RegistryError(f"registry {self.registry} sent manifest {reference} of {repository} with content "
                                f"hashing to {digest}, not {expected}", 502)
        return Manifest(answer.body, (answer.headers.get("Content-Type") or "").split(";")[0].strip(), digest)

    def json_manifest(self, repository: str, reference: str, accept: str = ACCEPT_MANIFESTS) -> dict | None:
        """A manifest as a JSON object; None when absent, or when what came is not a JSON object."""
        found = self.manifest(repository, reference, accept)
        if found is None:
            return None
        try:
            doc = json.loads(found.data)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def has_blob(self, repository: str, digest: str) -> bool:
        return self.ask("HEAD", repository, f"blobs/{digest}", f"check blob {digest[:19]} in") is not None

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size the registry announces for a blob, or None when it does not have it."""
        answer = self.ask("HEAD", repository, f"blobs/{digest}", f"check blob {digest[:19]} in")
        return int(answer.headers.get("Content-Length") or 0) if answer is not None else None

    # -- the one request path -------------------------------------------------------------------
    def ask(self, method: str, repository: str, path: str, action: str, *, accept: str | None = None,
            limit: int = MANIFEST_MAX) -> Answer | None:
        """Send a question about `repository`; the answer when 200, None when 404, else a RegistryError.

        `action` completes "could not … " in error messages, as in RegistryClient.request.
        """
        url = urljoin(self.base, f"{repository}/{path}")
        scope = f"repository:{repository}:pull"
        headers = {"Accept": accept} if accept else {}
        for attempt in range(self.policy.attempts):
            last = attempt == self.policy.attempts - 1
            try:
                answer = self._send_authenticated(method, url, scope, headers, limit)
            except OSError as exc:  # wire.ProtocolError (an answer that is not HTTP) too
                if is_tls_failure(exc):
                    raise RegistryError(f"TLS with registry {self.registry} failed ({exc.__class__.__name__}); if "
                                        "it serves plain HTTP, pass --insecure") from None
                if last:
                    raise RegistryError(f"could not {action} {self.registry}/{repository}: the registry is "
                                        f"unreachable or dropped the connection ({_reason(exc)})") from None
                self.policy.wait(attempt)
                continue
            if answer.status == 200 and not answer.truncated:
                return answer
            if answer.status == 200:
                raise RegistryError(f"registry {self.registry} sent an answer to {action} {self.registry}/"
                                    f"{repository} larger than {limit >> 20} MiB; it was not read", 502)
            if answer.status == 404:
                return None
            if self.policy.retryable_status(answer.status) and not last:
                self.policy.wait(attempt, answer.headers.get("Retry-After"))
                continue
            raise refusal(self.registry, repository, action, answer.status, answer.reason, answer.body,
                          has_credentials=self.auth.has_credentials, attempts=attempt + 1)
        raise AssertionError("unreachable")

    def _send_authenticated(self, method: str, url: str, scope: str, headers: dict[str, str],
                            limit: int) -> Answer:
        sent = {**headers, **self.auth.header_for_scope(scope)}
        answer = self._send(method, url, sent, limit)
        challenge = answer.headers.get("WWW-Authenticate") if answer.status == 401 else None
        reply = self.auth.answer(challenge, scope, sent) if challenge else None
        return self._send(method, url, {**headers, **reply}, limit) if reply else answer

    def _send(self, method: str, url: str, headers: dict[str, str], limit: int) -> Answer:
        """One request, following redirects; credentials go along only while the URL is the registry's."""
        for _ in range(REDIRECTS + 1):
            if not same_origin(url, self.base):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            answer = exchange(method, url, headers, timeouts=self.policy.timeouts, limit=limit)
            location = answer.headers.get("Location")
            if answer.status not in _REDIRECT_STATUSES or not location:
                return answer
            url = urljoin(url, location)
        return Answer(508, "too many redirects", Headers(), b"", False)


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else exc.__class__.__name__
