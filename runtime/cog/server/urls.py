"""One policy for every URL the server reaches: input downloads, webhooks and output uploads.

A URL is checked twice: its syntax when the request arrives (a 422 naming the field), and its
addresses when it is used: IP literals up front, host names by the resolver of the one session
that makes all outgoing requests (so a name cannot change its answer after the check).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import urllib.parse
from dataclasses import dataclass, field

import aiohttp
import aiohttp.abc

MiB = 1024 * 1024

# Addresses the server may not reach unless allowed explicitly: link-local (which holds the
# cloud metadata endpoints, 169.254.169.254 and fd00:ec2::254) and their IPv6 forms.
DEFAULT_DENY = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")
HTTP_SCHEMES = ("http", "https")


class UrlError(Exception):
    """A URL the server will not use; the message says which and why (with the URL redacted)."""


def _networks(value: str | None) -> list[ipaddress._BaseNetwork]:
    return [ipaddress.ip_network(item.strip(), strict=False) for item in (value or "").split(",") if item.strip()]


def redact(url: str) -> str:
    """A URL fit for a log or an error message: no credentials, no query string, no fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port:
            host += f":{parts.port}"
    except ValueError:
        return "(a malformed URL)"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def scrub(text: str, url: str) -> str:
    """`text` (an error message, say) with the secret parts of `url` cut out wherever they appear:
    credentials, query string, fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
        secrets = (parts.query, parts.fragment, parts.password, parts.username)
    except ValueError:
        return text.replace(url, redact(url))
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "(redacted)")
    return text


def url_problem(url: object, schemes: tuple[str, ...] = HTTP_SCHEMES) -> str | None:
    """Why `url` is not a well-formed URL with one of `schemes`, or None. Syntax only: no lookups."""
    if not isinstance(url, str):
        return "str type expected"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number in range
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in schemes:
        return f"'{parts.scheme or url[:20]}' is not a valid URL scheme; {', '.join(map(repr, schemes))} supported"
    if parts.scheme not in HTTP_SCHEMES:
        return None
    host = parts.hostname
    if not host:
        return f"{redact(url)} has no host"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return f"{redact(url)} is not a valid URL (it contains whitespace or control characters)"
    if "%" in host:
        return f"{redact(url)} is not a valid URL (zone ids are not supported)"
    if _ip(host) is None:
        try:
            host.encode("idna")
        except UnicodeError:
            return f"{redact(url)} is not a valid URL (its host name cannot be encoded)"
    return None


def _ip(host: str) -> ipaddress._BaseAddress | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


@dataclass
class UrlPolicy:
    max_bytes: int = 100 * MiB  # per input file download
    timeout: float = 60.0  # per input file download
    deny: list = field(default_factory=lambda: _networks(",".join(DEFAULT_DENY)))
    allow: list = field(default_factory=list)  # when non-empty, only these networks

    @classmethod
    def from_env(cls) -> UrlPolicy:
        """COG_INPUT_MAX_BYTES, COG_INPUT_TIMEOUT, COG_INPUT_URL_DENY and COG_INPUT_URL_ALLOW (CIDR lists)."""
        policy = cls()
        if value := os.environ.get("COG_INPUT_MAX_BYTES"):
            policy.max_bytes = int(value)
        if value := os.environ.get("COG_INPUT_TIMEOUT"):
            policy.timeout = float(value)
        policy.deny += _networks(os.environ.get("COG_INPUT_URL_DENY"))
        policy.allow = _networks(os.environ.get("COG_INPUT_URL_ALLOW"))
        return policy

    def permits(self, address: str) -> bool:
        ip = _ip(address.split("%")[0])
        if ip is None:
            return False
        if any(ip in net for net in self.deny):
            return False
        return not self.allow or any(ip in net for net in self.allow)

    def literal_problem(self, url: str) -> str | None:
        """Why the policy refuses a URL whose host is an IP literal, or None (names are checked on use)."""
        host = urllib.parse.urlsplit(url).hostname or ""
        if _ip(host) is not None and not self.permits(host):
            return f"{redact(url)} is an address the server may not reach"
        return None

    async def check(self, url: str) -> None:
        """Raise UrlError unless the URL is well formed and every address of its host is permitted."""
        if problem := url_problem(url):
            raise UrlError(problem)
        parts = urllib.parse.urlsplit(url)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 80,
                                                                 type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise UrlError(f"the host of {redact(url)} cannot be resolved ({exc})") from None
        for info in infos:
            if not self.permits(info[4][0]):
                raise UrlError(f"{redact(url)} resolves to {info[4][0]}, which the server may not reach")


class PolicyResolver(aiohttp.abc.AbstractResolver):
    """Resolves host names, dropping addresses the policy forbids, so that a name cannot
    change its answer between our check and the connection (DNS rebinding)."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
        self.inner = aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        allowed = [info for info in await self.inner.resolve(host, port, family) if self.policy.permits(info["host"])]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses the server may not reach")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


def policed_session(policy: UrlPolicy) -> aiohttp.ClientSession:
    """The server's one client session: it connects only where the policy allows."""
    connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy), limit=32)
    return aiohttp.ClientSession(connector=connector, trust_env=False)
