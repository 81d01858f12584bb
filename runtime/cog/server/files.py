"""Files in and out: input URLs and data URIs become local temp files; output files become
data URIs or are uploaded with PUT."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import mimetypes
import os
import tempfile
import urllib.parse
from typing import Any, Callable, TypeVar

import aiohttp

from .urls import UrlError, UrlPolicy, redact, url_problem

FILE_SCHEMES = ("data", "http", "https")
T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` on the default executor, off the event loop (asyncio.to_thread needs Python 3.9)."""
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


class InputFileError(Exception):
    """An input file cannot be fetched; the message says which and why."""


def file_url_problem(value: object) -> str | None:
    """Why a file input value is not something we can fetch, or None."""
    return url_problem(value, FILE_SCHEMES)


def _filename_from_url(url: str) -> str:
    name = urllib.parse.unquote(os.path.basename(urllib.parse.urlsplit(url).path))
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[-100:]
    return name or "file"


def _decode_data_uri(uri: str) -> tuple[bytes, str]:
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise InputFileError("the data URI has no comma before its payload")
    mime = header.split(";")[0] or "text/plain"
    if not header.endswith(";base64"):
        return urllib.parse.unquote_to_bytes(payload), mime
    text = "".join(urllib.parse.unquote(payload).split())  # URL-encoded and line-wrapped forms are fine
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InputFileError("the data URI's payload is not valid base64") from None
    return data, mime


REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5


class Fetcher:
    """Downloads input files through the server's policed session."""

    def __init__(self, policy: UrlPolicy, session: aiohttp.ClientSession) -> None:
        self.policy, self.session = policy, session

    async def fetch(self, url: str, directory: str) -> str:
        if url.startswith("data:"):  # decoding a big one would stall the event loop: use a thread
            return await in_thread(self._save_data_uri, url, directory)
        path = os.path.join(tempfile.mkdtemp(dir=directory), _filename_from_url(url))
        try:
            await asyncio.wait_for(self._download(url, path), self.policy.timeout)
        except UrlError as exc:
            raise InputFileError(str(exc)) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:  # asyncio's differs from the builtin on 3.10
            reason = str(exc) or ("timed out" if isinstance(exc, asyncio.TimeoutError) else type(exc).__name__)
            raise InputFileError(f"fetching {redact(url)} failed: {reason}") from None
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
            await self.policy.check(url)
            async with self.session.get(url, allow_redirects=False) as response:
                if response.status in REDIRECTS and response.headers.get("Location"):
                    url = urllib.parse.urljoin(url, response.headers["Location"])
                    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                        raise InputFileError(f"fetching an input redirected to a non-http URL ({redact(url)})")
                    continue
                if response.status != 200:
                    raise InputFileError(f"fetching {redact(url)} answered HTTP {response.status}")
                size = 0
                with open(path, "wb") as out:  # noqa: ASYNC230  a local temp file; the network is the wait
                    async for chunk in response.content.iter_chunked(256 * 1024):
                        size += len(chunk)
                        if size > self.policy.max_bytes:
                            raise InputFileError(f"{redact(url)} is larger than {self.policy.max_bytes} bytes")
                        out.write(chunk)
                return
        raise InputFileError(f"fetching {redact(url)} took more than {MAX_REDIRECTS} redirects")


# ---------------------------------------------------------------- outputs


def mime_type(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def data_uri(path: str) -> str:
    with open(path, "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode()
    return f"data:{mime_type(path)};base64,{encoded}"


async def upload(session: aiohttp.ClientSession, policy: UrlPolicy, path: str, base_url: str) -> str:
    """PUT the file to base_url + its name; the answer's Location (or the URL) names it.
    Raises UrlError when the policy refuses the URL; redirects are not followed."""
    url = base_url.rstrip("/") + "/" + urllib.parse.quote(os.path.basename(path))
    await policy.check(url)
    timeout = aiohttp.ClientTimeout(sock_connect=policy.timeout, sock_read=policy.timeout)
    with open(path, "rb") as handle:  # noqa: ASYNC230  a local file that aiohttp streams from
        async with session.put(url, data=handle, headers={"Content-Type": mime_type(path)},
                               allow_redirects=False, timeout=timeout) as response:
            if response.status >= 400:
                raise OSError(f"uploading {os.path.basename(path)} answered HTTP {response.status}")
            location = response.headers.get("Location")
    final = urllib.parse.urljoin(url, location) if location else url
    parts = urllib.parse.urlsplit(final)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
