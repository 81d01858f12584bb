"""Moving one blob between an OCI layout and a registry, streamed from disk and resumable.

Push: HEAD (skip what the registry has) → cross-repository mount when the blob is known to live in
another repository of the same registry → upload. Blobs up to MONOLITHIC_MAX go in one PUT; larger ones in
CHUNK_SIZE PATCHes, and a dropped connection resumes from the offset the registry reports for the
upload session. The registry checks the digest when the upload is committed, so a corrupt local blob
can never land under its name. Pull streams into a temp file inside the layout, checks size and digest,
then renames it into place.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from functools import partial
from typing import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from cogbuild.layers.descriptor import Descriptor

from .client import RegistryClient, RegistryError
from .layout import HashingFile, Layout

MONOLITHIC_MAX = 64 << 20
CHUNK_SIZE = 64 << 20
BLOB_ATTEMPTS = 4
_READ = 1 << 20

Progress = Callable[[str, int, int], None]  # (digest, bytes done, bytes total)


@dataclass
class TransferStats:
    """What a push or pull actually moved; shared between worker threads."""

    bytes_sent: int = 0
    bytes_received: int = 0
    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    blobs_downloaded: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class TransferCancelled(Exception):
    """Raised inside a worker once another blob failed or the user interrupted: stop sending now."""


class _FileSlice:
    """`length` bytes of a file from `start`, read in large blocks; reports bytes as they are read."""

    def __init__(self, path: Path, start: int, length: int, on_bytes: Callable[[int], None],
                 cancel: threading.Event | None = None) -> None:
        self._cancel = cancel
        self._file = open(path, "rb")
        self._file.seek(start)
        self._left = length
        self._length = length
        self._on_bytes = on_bytes

    def __len__(self) -> int:  # lets requests send Content-Length instead of chunked encoding
        return self._length

    def read(self, size: int = -1) -> bytes:
        if self._cancel is not None and self._cancel.is_set():
            raise TransferCancelled()
        if self._left <= 0:
            return b""
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._file.read(size)
        self._left -= len(data)
        self._on_bytes(len(data))
        return data

    def close(self) -> None:
        self._file.close()


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class BlobPusher:
    """Pushes blobs of one layout into one repository."""

    def __init__(self, client: RegistryClient, repository: str, layout: Layout, *,
                 stats: TransferStats, progress: Progress | None = None,
                 mount_sources: Callable[[str], list[str]] = lambda digest: [],
                 fetch_missing: Callable[[Descriptor], None] | None = None) -> None:
        self.client = client
        self.repository = repository
        self.layout = layout
        self.stats = stats
        self.progress = progress
        self.mount_sources = mount_sources
        self.fetch_missing = fetch_missing  # brings a remote-only blob into the layout when it must be uploaded
        self.cancel = threading.Event()

    def push(self, desc: Descriptor) -> None:
        path = self.layout.blob_path(desc.digest)
        if not path.exists() and self.fetch_missing is None:
            raise RegistryError(f"blob {desc.digest} is missing from the local store {self.layout.root}")
        if self.exists(desc):
            self.stats.add(blobs_skipped=1)
            self._report(desc, desc.size)
            return
        for attempt in range(BLOB_ATTEMPTS):
            location = self._start(desc)
            if location is None:  # mounted from another repository
                self.stats.add(blobs_mounted=1)
                self._report(desc, desc.size)
                return
            if not path.exists() and self.fetch_missing is not None:
                self.fetch_missing(desc)  # not mountable (another registry, or no access): the bytes go through us
            try:
                if desc.size <= MONOLITHIC_MAX:
                    self._put_whole(location, desc, path)
                else:
                    self._put_chunks(location, desc, path)
            except RegistryError as exc:
                # The blob may be there anyway: our commit landed and only its answer was lost, or a
                # concurrent writer of the same bytes committed first (distribution answers DIGEST_INVALID).
                if self._exists_quietly(desc):
                    break
                if attempt == BLOB_ATTEMPTS - 1 or not _worth_retrying(exc):
                    raise
                continue
            break
        self.stats.add(blobs_uploaded=1)

    def exists(self, desc: Descriptor) -> bool:
        response = self.client.request(
            "HEAD", self.client.url(f"{self.repository}/blobs/{desc.digest}"), repository=self.repository,
            action=f"check blob {desc.digest[:19]} in", ok=(200, 404))
        return response.status_code == 200

    def _exists_quietly(self, desc: Descriptor) -> bool:
        try:
            return self.exists(desc)
        except RegistryError:
            return False

    # -- starting: mount or new session ---------------------------------------------------------
    def _start(self, desc: Descriptor) -> str | None:
        url = self.client.url(f"{self.repository}/blobs/uploads/")
        for source in self.mount_sources(desc.digest):
            if source == self.repository:
                continue
            scope = f"repository:{self.repository}:pull,push repository:{source}:pull"
            response = self.client.request(
                "POST", with_query(url, mount=desc.digest, **{"from": source}), repository=self.repository,
                scope=scope, action=f"mount blob {desc.digest[:19]} into", ok=(201, 202, 401, 403))
            if response.status_code == 201:
                return None
            if response.status_code == 202:
                return self.client.resolve_location(response)  # not mountable: the registry opened an upload
            # 401/403: no read access to the source repository; try the next one, then upload.
        response = self.client.request("POST", url, repository=self.repository, ok=(202,),
                                       action=f"start uploading blob {desc.digest[:19]} to")
        return self.client.resolve_location(response)

    # -- sending --------------------------------------------------------------------------------
    def _put_whole(self, location: str, desc: Descriptor, path: Path) -> None:
        counted = self._counter(desc, 0)
        self.client.request(
            "PUT", with_query(location, digest=desc.digest), repository=self.repository, retry=False,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            body=lambda: _FileSlice(path, 0, desc.size, counted, self.cancel), ok=(201,),
            action=f"upload blob {desc.digest[:19]} to")

    def _put_chunks(self, location: str, desc: Descriptor, path: Path) -> None:
        offset = 0
        failures = 0
        while offset < desc.size:
            length = min(CHUNK_SIZE, desc.size - offset)
            counted = self._counter(desc, offset)
            start = offset
            try:
                response = self.client.request(
                    "PATCH", location, repository=self.repository, retry=False, ok=(202,),
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(length),
                             "Content-Range": f"{start}-{start + length - 1}"},
                    body=partial(_FileSlice, path, start, length, counted, self.cancel),  # this slice's values
                    action=f"upload blob {desc.digest[:19]} to")
            except RegistryError as exc:
                failures += 1
                if failures >= BLOB_ATTEMPTS or not _worth_retrying(exc):
                    raise
                location, offset = self._resume_point(location, exc)
                continue
            location = self.client.resolve_location(response)
            offset = start + length
        self.client.request("PUT", with_query(location, digest=desc.digest), repository=self.repository,
                            ok=(201,), headers={"Content-Length": "0"},
                            action=f"commit blob {desc.digest[:19]} to")

    def _resume_point(self, location: str, failure: RegistryError) -> tuple[str, int]:
        """Ask the registry how much of an interrupted upload it kept.

        Some registries (distribution among them) drop a session whose last chunk arrived only in
        part; then the blob starts over in a new session, which the caller's retry loop opens.
        """
        try:
            response = self.client.request("GET", location, repository=self.repository, ok=(204,),
                                           action="resume an interrupted upload to")
        except RegistryError as exc:
            if exc.status is not None and exc.status < 500 and exc.status != 429:
                raise RegistryError(str(failure), 404) from None  # session gone: start the blob again
            raise
        end = response.headers.get("Range", "0-0").rpartition("-")[2]
        received = int(end) + 1 if end.isdigit() and int(end) > 0 else 0
        return self.client.resolve_location(response), received

    def _counter(self, desc: Descriptor, base: int) -> Callable[[int], None]:
        done = [base]

        def count(n: int) -> None:
            done[0] += n
            self.stats.add(bytes_sent=n)
            self._report(desc, done[0])

        return count

    def _report(self, desc: Descriptor, done: int) -> None:
        if self.progress:
            self.progress(desc.digest, done, desc.size)


def _worth_retrying(exc: RegistryError) -> bool:
    """Connection failures (no status), 5xx, 429 and a lost upload session are transient."""
    return exc.status is None or exc.status >= 500 or exc.status in (404, 416, 429)


def download_blob(client: RegistryClient, repository: str, desc: Descriptor, layout: Layout, *,
                  stats: TransferStats, progress: Progress | None = None,
                  cancel: threading.Event | None = None) -> None:
    """Fetch one blob into the layout unless it is already there; verify size and digest.

    A dropped connection resumes with a Range request from the bytes already received; content that
    does not hash to its digest is fetched once more from the start, then refused.
    """
    path = layout.blob_path(desc.digest)
    if path.exists() and path.stat().st_size == desc.size:
        stats.add(blobs_skipped=1)
        return
    fd, tmp = layout.tmp_file()
    sink = HashingFile(os.fdopen(fd, "wb"))
    try:
        _download_into(sink, client, repository, desc, stats, progress, cancel or threading.Event())
        sink.close()
        layout.add_blob_file(Path(tmp), desc.digest)
        stats.add(blobs_downloaded=1)
    except BaseException:  # interrupted too: no partial file stays behind
        sink.close()
        os.unlink(tmp)
        raise


def _download_into(sink: HashingFile, client: RegistryClient, repository: str, desc: Descriptor,
                   stats: TransferStats, progress: Progress | None, cancel: threading.Event) -> None:
    action = f"download blob {desc.digest[:19]} from"
    failure: RegistryError | None = None
    for _ in range(BLOB_ATTEMPTS):
        try:
            _receive(sink, client, repository, desc, stats, progress, action, cancel)
        except RegistryError as exc:
            if exc.status is not None and exc.status < 500 and exc.status != 429:
                raise
            failure = exc
            continue
        if sink.size == desc.size and sink.digest == desc.digest:
            return
        failure = RegistryError(
            f"registry {client.registry} sent blob {desc.digest} of {repository} with the wrong content "
            f"({sink.size} bytes hashing to {sink.digest}, expected {desc.size} bytes); nothing was stored", 502)
        sink.reset()
    raise failure  # type: ignore[misc]


def _receive(sink: HashingFile, client: RegistryClient, repository: str, desc: Descriptor,
             stats: TransferStats, progress: Progress | None, action: str, cancel: threading.Event) -> None:
    """One GET, continuing from what `sink` already holds when the registry honours Range."""
    headers = {"Range": f"bytes={sink.size}-"} if 0 < sink.size < desc.size else {}
    response = client.request("GET", client.url(f"{repository}/blobs/{desc.digest}"), repository=repository,
                              action=action, stream=True, ok=(200, 206), headers=headers)
    if response.status_code == 200 and sink.size:
        sink.reset()  # the registry sent the whole blob again
    try:
        with response:
            for chunk in response.iter_content(_READ):
                if cancel.is_set():
                    raise TransferCancelled()
                sink.write(chunk)
                stats.add(bytes_received=len(chunk))
                if progress:
                    progress(desc.digest, sink.size, desc.size)
                if sink.size > desc.size:
                    return  # too long: the caller's digest check refuses it
    except requests.exceptions.RequestException as exc:
        raise RegistryError(f"could not {action} {client.registry}/{repository}: the connection dropped "
                            f"({exc.__class__.__name__})") from None
