"""Files in and out: input URLs and data URIs become local temp files; output files become
data URIs or are uploaded with PUT."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import mimetypes
import os
import socket
import tempfile
import urllib.parse
from dataclasses import dataclass, field

import aiohttp
import aiohttp.abc

MiB = 1024 * 1024

# Addresses an input URL may not reach unless allowed explicitly: link-local (which holds the
# cloud metadata endpoints, 169.254.169.254 and fd00:ec2::254) and their IPv6 forms.
DEFAULT_DENY = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32")


class InputFileError(Exception):
    """An input file cannot be fetched; the message says which and why."""


def _networks(value: str | None) -> list[ipaddress._BaseNetwork]:
    return [ipaddress.ip_network(item.strip(), strict=False) for item in (value or "").split(",") if item.strip()]


@dataclass
class FetchPolicy:
    max_bytes: int = 100 * MiB
    timeout: float = 60.0
    deny: list = field(default_factory=lambda: _networks(",".join(DEFAULT_DENY)))
    allow: list = field(default_factory=list)  # when non-empty, only these networks

    @classmethod
    def from_env(cls) -> FetchPolicy:
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
        ip = ipaddress.ip_address(address.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.deny):
            return False
        return not self.allow or any(ip in net for net in self.allow)


def url_problem(value: str) -> str | None:
    """Why a file input value is not something we can fetch, or None."""
    scheme = urllib.parse.urlsplit(value).scheme
    if scheme in ("http", "https", "data"):
        return None
    return f"'{scheme or value[:20]}' is not a valid URL scheme; 'data', 'http' and 'https' are supported"


def _filename_from_url(url: str) -> str:
    name = urllib.parse.unquote(os.path.basename(urllib.parse.urlsplit(url).path))
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[-100:]
    return name or "file"


def _decode_data_uri(uri: str) -> tuple[bytes, str]:
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise InputFileError("the data URI has no comma before its payload")
    mime = header.split(";")[0] or "text/plain"
    try:
        if header.endswith(";base64"):
            data = base64.b64decode(payload, validate=False)
        else:
            data = urllib.parse.unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise InputFileError(f"the data URI cannot be decoded ({exc})") from None
    return data, mime


class PolicyResolver(aiohttp.abc.AbstractResolver):
    """Resolves host names, dropping addresses the policy forbids, so that a name cannot
    change its answer between our check and the connection (DNS rebinding)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.inner = aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list:
        allowed = [info for info in await self.inner.resolve(host, port, family) if self.policy.permits(info["host"])]
        if not allowed:
            raise OSError(f"{host} resolves only to addresses that input URLs may not reach")
        return allowed

    async def close(self) -> None:
        await self.inner.close()


REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5


class Fetcher:
    """Downloads input files; its own session connects only where the policy allows."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy), limit=32)
        self.session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def close(self) -> None:
        await self.session.close()

    async def fetch(self, url: str, directory: str) -> str:
        if url.startswith("data:"):  # decoding a big one would stall the event loop: use a thread
            return await asyncio.to_thread(self._save_data_uri, url, directory)
        path = os.path.join(tempfile.mkdtemp(dir=directory), _filename_from_url(url))
        try:
            await asyncio.wait_for(self._download(url, path), self.policy.timeout)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:  # asyncio's differs from the builtin on 3.10
            reason = str(exc) or ("timed out" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__)
            raise InputFileError(f"fetching {_redact(url)} failed: {reason}") from None
        return path

    def _save_data_uri(self, uri: str, directory: str) -> str:
        data, mime = _decode_data_uri(uri)
        if len(data) > self.policy.max_bytes:
            raise InputFileError(f"the data URI is larger than {self.policy.max_bytes} bytes")
        path = os.path.join(tempfile.mkdtemp(dir=directory), "file" + (mimetypes.guess_extension(mime) or ""))
        with open(path, "wb") as out:
            out.write(data)
        return path

    async def _download(self, url: str, path: str) -> None:
        """GET url into path, following a few redirects, each one checked against the policy."""
        for _ in range(MAX_REDIRECTS + 1):
            await self._check_host(url)
            async with self.session.get(url, allow_redirects=False) as response:
                if response.status in REDIRECTS and response.headers.get("Location"):
                    url = urllib.parse.urljoin(url, response.headers["Location"])
                    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                        raise InputFileError(f"fetching an input redirected to a non-http URL ({_redact(url)})")
                    continue
                if response.status != 200:
                    raise InputFileError(f"fetching {_redact(url)} answered HTTP {response.status}")
                size = 0
                with open(path, "wb") as out:
                    async for chunk in response.content.iter_chunked(256 * 1024):
                        size += len(chunk)
                        if size > self.policy.max_bytes:
                            raise InputFileError(f"{_redact(url)} is larger than {self.policy.max_bytes} bytes")
                        out.write(chunk)
                return
        raise InputFileError(f"fetching {_redact(url)} took more than {MAX_REDIRECTS} redirects")

    async def _check_host(self, url: str) -> None:
        """Refuse forbidden addresses up front, including IP literals (which skip the resolver)."""
        parts = urllib.parse.urlsplit(url)
        if not parts.hostname:
            raise InputFileError(f"{_redact(url)} has no host")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 80,
                                                                 type=socket.SOCK_STREAM)
        except OSError as exc:
            raise InputFileError(f"the host of {_redact(url)} cannot be resolved ({exc})") from None
        for info in infos:
            if not self.policy.permits(info[4][0]):
                raise InputFileError(f"{_redact(url)} resolves to {info[4][0]}, which input URLs may not reach")


def _redact(url: str) -> str:
    """A URL fit for an error message: no credentials, no query string."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


# ---------------------------------------------------------------- outputs


def mime_type(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def data_uri(path: str) -> str:
    with open(path, "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode()
    return f"data:{mime_type(path)};base64,{encoded}"


async def upload(session: aiohttp.ClientSession, path: str, base_url: str) -> str:
    """PUT the file to base_url + its name; the answer's Location (or the URL) names it."""
    url = base_url.rstrip("/") + "/" + urllib.parse.quote(os.path.basename(path))
    with open(path, "rb") as handle:
        async with session.put(url, data=handle, headers={"Content-Type": mime_type(path)}) as response:
            if response.status >= 400:
                raise OSError(f"uploading {os.path.basename(path)} answered HTTP {response.status}")
            location = response.headers.get("Location")
    final = urllib.parse.urljoin(url, location) if location else url
    parts = urllib.parse.urlsplit(final)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
