"""A wheel's METADATA without downloading the wheel: HTTP range requests for the zip directory and the
one member (servers that refuse ranges get one whole download instead)."""

from __future__ import annotations

import io
import re
import zipfile

import httpx

from ..http_fetch import get

_METADATA = re.compile(r"[^/]+\.dist-info/METADATA")


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of a remote file through HTTP range requests (for zipfile)."""

    def __init__(self, http: httpx.Client, url: str, size: int) -> None:
        self.http, self.url, self.size, self.position = http, url, size, 0

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = {0: offset, 1: self.position + offset, 2: self.size + offset}[whence]
        return self.position

    def read(self, count: int = -1) -> bytes:
        end = self.size if count is None or count < 0 else min(self.size, self.position + count)
        if end <= self.position:
            return b""
        response = get(self.http, self.url, headers={"Range": f"bytes={self.position}-{end - 1}"})
        if response.status_code != 206:
            raise RangesRefused(f"{self.url} answered {response.status_code} to a range request")
        self.position += len(response.content)
        return response.content

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class RangesRefused(Exception):
    pass


def wheel_metadata(http: httpx.Client, url: str, size: int | None) -> bytes:
    """The METADATA member of the wheel at `url`."""
    if size:
        try:
            # A 64 KiB buffer: the zip end record and directory usually arrive in one or two requests.
            return _metadata_from(io.BufferedReader(RangeFile(http, url, size), buffer_size=1 << 16))
        except RangesRefused:
            pass
    response = get(http, url)
    response.raise_for_status()
    return _metadata_from(io.BytesIO(response.content))


def _metadata_from(handle) -> bytes:
    with zipfile.ZipFile(handle) as archive:
        name = next((n for n in archive.namelist() if _METADATA.fullmatch(n)), None)
        if name is None:
            raise zipfile.BadZipFile("no .dist-info/METADATA in the wheel")
        return archive.read(name)
