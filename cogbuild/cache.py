"""Where cogbuild keeps things on the host, and the content-addressed download cache.

Downloads follow the one download policy (`http_fetch`: retries, resume with Range, timeouts), land
in the content store (`content_store`: a temporary file renamed into place), are checked against the
sha256 and size the lock pinned; reads hash the file again, so a corrupted entry is noticed and
fetched anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import urllib.parse
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    import httpx

    from .registry.binary_cache import CacheRepository

from .artifacts import Artifact
from .content_store import CHUNK, ContentStore
from .content_store import file_sha256  # noqa: F401  re-exported: build, plan and pyresolve import it from here
from .errors import CogbuildError
from .layers.atomic import atomic_write  # noqa: F401  re-exported: build and lock import it from here
from .registry.layout import HashingFile, Layout

# Every cache sits under one root, Settings.cache_root, which the CLI reads once and passes down; library
# functions take that root as a parameter and derive their own folder from it.


def mount_hints_dir(cache_root: Path) -> Path:
    """Which repositories of each registry hold which blobs (registry.blob_locations), for mounts."""
    return cache_root / "registry-blobs"


# A scratch directory's owner file, beside it: locked (flock) by the process using the directory for as long
# as it lives. The kernel drops the lock when that process ends, however it ends (SIGKILL too).
_OWNER = ".owner"
_OWNER_FDS: dict[Path, int] = {}  # this process's scratch directories -> their locked owner files
_UNOWNED_GRACE = 24 * 3600  # seconds: a directory with no owner file (an older cogbuild's) may still be in use


def scratch_dir(cache_root: Path, prefix: str) -> Path:
    """A new directory for one build's temporary files, on the cache's disk (not a tmpfs /tmp, which is
    memory); the caller removes it with remove_scratch. First removes the scratch directories whose
    process is gone (a build killed before it could clean up), never one whose process still runs."""
    parent = cache_root / "tmp"
    parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(parent)
    while True:
        fd, owner = tempfile.mkstemp(prefix=prefix, suffix=_OWNER, dir=parent)
        fcntl.flock(fd, fcntl.LOCK_EX)
        directory = Path(owner[: -len(_OWNER)])
        try:
            if _still_named(fd, Path(owner)):  # else another process's sweep took it before it was locked
                directory.mkdir()
                _OWNER_FDS[directory] = fd
                return directory
        except FileExistsError:  # an older cogbuild's directory has that name
            Path(owner).unlink()
        os.close(fd)


def remove_scratch(directory: Path) -> None:
    """Remove a scratch_dir with what it holds, then its owner file, and release the lock."""
    shutil.rmtree(directory, ignore_errors=True)
    Path(f"{directory}{_OWNER}").unlink(missing_ok=True)
    fd = _OWNER_FDS.pop(directory, None)
    if fd is not None:
        os.close(fd)


def _remove_abandoned(parent: Path) -> None:
    """Remove the scratch directories under `parent` whose owner file nobody holds locked."""
    for entry in parent.iterdir():
        if entry.name.endswith(_OWNER):
            _remove_if_unlocked(entry)
        elif not Path(f"{entry}{_OWNER}").exists():
            # An owner file exists before its directory and goes after it: this one predates them.
            with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                if entry.is_dir() and time.time() - entry.stat().st_mtime > _UNOWNED_GRACE:
                    shutil.rmtree(entry, ignore_errors=True)


def _remove_if_unlocked(owner: Path) -> None:
    try:
        fd = os.open(owner, os.O_RDWR)
    except FileNotFoundError:
        return  # its process removed it meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return  # in use
    try:
        if _still_named(fd, owner):  # not already removed and made anew by someone else
            shutil.rmtree(Path(str(owner)[: -len(_OWNER)]), ignore_errors=True)
            owner.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _still_named(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (a concurrent sweep may have unlinked it)."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def file_stamp(st: os.stat_result) -> list[int]:
    """What changes when a file is rewritten or replaced (size, mtime, inode): a cheap check that a file
    hashed before is still the one that was hashed."""
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class DownloadError(CogbuildError):
    pass


def _size_matches(size: int, artifact: Artifact) -> bool:
    """Size 0 in a lock means the source listed none (python-build-standalone's data): sha256 alone decides."""
    return artifact.size in (0, size)


class Unavailable(DownloadError):
    """A source does not serve the file (an HTTP error, no connection, no such file): another one may."""


def _receive(artifact: Artifact, url: str, client: httpx.Client, sink: HashingFile) -> None:
    """The artifact's bytes into `sink`: over http(s) under the download policy (retries, resume with
    Range), or from a local file:// URL (a --find-links directory)."""
    if url.startswith("file://"):
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
        try:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    sink.write(chunk)
        except OSError as exc:
            raise Unavailable(f"cannot read {artifact.filename} from {path}: {exc.strerror}") from None
        return
    import httpx  # here, not at the top: commands that only read the cache start without it

    from .http_fetch import download

    try:
        download(client, url, sink, size=artifact.size)
    except httpx.HTTPError as exc:
        raise Unavailable(f"downloading {artifact.filename} from {url} failed: {exc}") from None


def _missing(artifact: Artifact) -> DownloadError:
    return DownloadError(f"{artifact.filename} is missing from the download cache; run the command again")


def _corrupt(artifact: Artifact) -> DownloadError:
    return DownloadError(f"cached {artifact.filename} is corrupt and was removed; run the command again")


class BlobCache:
    """Artifacts by sha256 in a content store at <cache>/blobs (files blobs/sha256/<hex>); with a mirror (a
    cache repository), what the upstream URL no longer serves is fetched from there; with a snapshot
    service's base URL, a .deb the Debian archive dropped is looked for there first."""

    def __init__(self, cache_root: Path, mirror: CacheRepository | None = None,
                 snapshot: str | None = None) -> None:
        self.store = ContentStore(cache_root / "blobs")
        self.mirror, self.snapshot = mirror, snapshot
        # sha256 -> file_stamp of the file when it was hashed here: a build checks its inputs before
        # composing and reads them again to compose; a 3 GB CUDA wheel set is hashed once, not twice.
        self._verified: dict[str, list[int]] = {}

    def as_layout(self) -> Layout:
        """The same files seen as an OCI layout's blobs (blobs/sha256/<hex>), for registry transfers."""
        return Layout(self.store.root.parent)

    def path(self, sha256: str) -> Path:
        return self.store.path(sha256)  # the lock checks the digest too; the store refuses anything else

    def get(self, artifact: Artifact) -> Path | None:
        """The verified cached file, or None (a corrupt entry, or one of another size than the lock's, is removed)."""
        path = self.path(artifact.sha256)
        try:
            stamp = file_stamp(path.stat())
        except FileNotFoundError:
            return None
        if not _size_matches(stamp[0], artifact):  # cheaper than hashing a file that cannot be the one
            path.unlink(missing_ok=True)
            return None
        if self._verified.get(artifact.sha256) == stamp:
            return path
        verified = self.store.get_path(artifact.sha256)
        if verified is not None:
            self._verified[artifact.sha256] = stamp
        return verified

    def read(self, artifact: Artifact) -> bytes:
        if not self.path(artifact.sha256).exists():
            raise _missing(artifact)
        data = self.store.get_bytes(artifact.sha256)
        if data is None:
            raise _corrupt(artifact)
        return data

    def verified_path(self, artifact: Artifact) -> Path:
        """The cached file, hashed while read in chunks (not held in memory); a corrupt one is removed."""
        if not self.path(artifact.sha256).exists():
            raise _missing(artifact)
        path = self.get(artifact)
        if path is None:
            raise _corrupt(artifact)
        return path

    def put(self, data: bytes) -> str:
        """Keep bytes made here (a built wheel) under their sha256, written atomically; returns the sha256."""
        return self.store.put_bytes(data)

    def fetch(self, artifact: Artifact, client: httpx.Client) -> Path:
        """The verified file: cached, else from its URL; when the URL no longer serves it, from
        snapshot.debian.org (a .deb) or the cache repository. Content that does not match the lock is an
        error wherever it came from, never a reason to try elsewhere."""
        cached = self.get(artifact)
        if cached is not None:
            return cached
        try:
            return self._download(artifact, artifact.url, client)
        except Unavailable as upstream:
            from .debian.snapshot import snapshot_urls  # only a missing upstream file needs it

            for url in snapshot_urls(artifact, client, self.snapshot):
                try:
                    return self._download(artifact, url, client)
                except Unavailable:
                    continue
            if self.mirror is None:
                raise
            self._from_mirror(artifact, upstream)
            return self.verified_path(artifact)

    def _download(self, artifact: Artifact, url: str, client: httpx.Client) -> Path:
        with self.store.writer() as sink:
            _receive(artifact, url, client, sink)
            got = sink.hasher.hexdigest()
            if got != artifact.sha256 or not _size_matches(sink.size, artifact):
                raise DownloadError(
                    f"{artifact.filename} from {url} does not match the lock: expected sha256 "
                    f"{artifact.sha256} ({artifact.size} bytes), got {got} ({sink.size} bytes)")
        path = self.path(artifact.sha256)
        self._verified[artifact.sha256] = file_stamp(path.stat())  # hashed as it arrived
        return path

    def _from_mirror(self, artifact: Artifact, upstream: Unavailable) -> None:
        """Fetch the file from the cache repository (verified against its sha256), or say why not."""
        from .registry.errors import OCIError

        assert self.mirror is not None
        try:
            found = self.mirror.fetch(f"sha256:{artifact.sha256}", artifact.size, self.as_layout())
        except OCIError as exc:
            raise Unavailable(f"{upstream}, and the cache repository could not serve it either: {exc}") from None
        if not found:
            raise Unavailable(f"{upstream}, and the cache repository {self.mirror.name} does not have it") from None

    def fetch_all(self, artifacts: Iterable[Artifact], workers: int = 8,
                  on_done: Callable[[Artifact], None] | None = None) -> dict[str, Path]:
        """Download what is missing in parallel; returns sha256 -> verified path."""
        from .http_fetch import new_client

        todo = sorted(set(artifacts), key=lambda a: -a.size)  # biggest first: they bound the wall time
        with new_client() as client, \
                ThreadPoolExecutor(max_workers=workers) as pool:
            def one(artifact: Artifact) -> tuple[str, Path]:
                path = self.fetch(artifact, client)
                if on_done:
                    on_done(artifact)
                return artifact.sha256, path

            return dict(pool.map(one, todo))
