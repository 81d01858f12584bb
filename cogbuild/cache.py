"""Where cogbuild keeps things on the host, and the content-addressed download cache.

Downloads land in a temporary file, are checked against the sha256 and size the lock pinned, and are
renamed into place; reads hash the file again, so a corrupted entry is noticed and fetched anew.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import urllib.parse
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

if TYPE_CHECKING:
    import httpx

from .artifacts import Artifact
from .errors import CogbuildError
from .layers.descriptor import is_sha256_hex
from .registry.layout import atomic_write

_CHUNK = 1 << 20


def cache_dir() -> Path:
    base = os.environ.get("COGBUILD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cogbuild")
    return Path(base)


def store_dir() -> Path:
    """The local image store: an OCI image layout."""
    base = os.environ.get("COGBUILD_STORE") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "cogbuild", "store")
    return Path(base)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class DownloadError(CogbuildError):
    pass


def _size_matches(size: int, artifact: Artifact) -> bool:
    """Size 0 in a lock means the source listed none (python-build-standalone's data): sha256 alone decides."""
    return artifact.size in (0, size)


def _read_url(artifact: Artifact, client: httpx.Client) -> Iterator[bytes]:
    """The artifact's bytes from http(s), or from a local file:// URL (a --find-links directory)."""
    if artifact.url.startswith("file://"):
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(artifact.url).path))
        try:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    yield chunk
        except OSError as exc:
            raise DownloadError(f"cannot read {artifact.filename} from {path}: {exc.strerror}") from None
        return
    with client.stream("GET", artifact.url) as response:
        if response.status_code != 200:
            raise DownloadError(f"downloading {artifact.filename} from {artifact.url} failed: "
                                f"HTTP {response.status_code}")
        yield from response.iter_bytes(_CHUNK)


def _corrupt(artifact: Artifact) -> DownloadError:
    return DownloadError(f"cached {artifact.filename} is corrupt and was removed; run the command again")


class BlobCache:
    """Artifacts by sha256 under <cache>/blobs/sha256/<hex>."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_dir()) / "blobs" / "sha256"

    def path(self, sha256: str) -> Path:
        if not is_sha256_hex(sha256):  # the lock checks this too; a path is built from nothing else
            raise CogbuildError(f"{sha256!r} is not a sha256 (64 lowercase hex digits)")
        return self.root / sha256

    def get(self, artifact: Artifact) -> Path | None:
        """The verified cached file, or None (a corrupt entry is removed)."""
        path = self.path(artifact.sha256)
        if not path.exists():
            return None
        if _size_matches(path.stat().st_size, artifact) and file_sha256(path) == artifact.sha256:
            return path
        path.unlink(missing_ok=True)
        return None

    def read(self, artifact: Artifact) -> bytes:
        path = self.path(artifact.sha256)
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != artifact.sha256:
            path.unlink(missing_ok=True)
            raise _corrupt(artifact)
        return data

    def verified_path(self, artifact: Artifact) -> Path:
        """The cached file, hashed while read in chunks (not held in memory); a corrupt one is removed."""
        if not self.path(artifact.sha256).exists():
            raise DownloadError(f"{artifact.filename} is missing from the download cache; run the command again")
        path = self.get(artifact)
        if path is None:
            raise _corrupt(artifact)
        return path

    def fetch(self, artifact: Artifact, client: httpx.Client) -> Path:
        import httpx  # here, not at the top: commands that only read the cache start without it

        cached = self.get(artifact)
        if cached is not None:
            return cached
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".part-")
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in _read_url(artifact, client):
                    h.update(chunk)
                    out.write(chunk)
            got = h.hexdigest()
            size = os.path.getsize(tmp)
            if got != artifact.sha256 or not _size_matches(size, artifact):
                raise DownloadError(
                    f"{artifact.filename} from {artifact.url} does not match the lock: expected sha256 "
                    f"{artifact.sha256} ({artifact.size} bytes), got {got} ({size} bytes)")
            os.replace(tmp, self.path(artifact.sha256))
        except httpx.HTTPError as exc:
            raise DownloadError(f"downloading {artifact.filename} from {artifact.url} failed: {exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return self.path(artifact.sha256)

    def fetch_all(self, artifacts: Iterable[Artifact], workers: int = 8,
                  on_done: Callable[[Artifact], None] | None = None) -> dict[str, Path]:
        """Download what is missing in parallel; returns sha256 -> verified path."""
        import httpx

        todo = sorted(set(artifacts), key=lambda a: -a.size)  # biggest first: they bound the wall time
        with httpx.Client(timeout=httpx.Timeout(60.0), follow_redirects=True) as client, \
                ThreadPoolExecutor(max_workers=workers) as pool:
            def one(artifact: Artifact) -> tuple[str, Path]:
                path = self.fetch(artifact, client)
                if on_done:
                    on_done(artifact)
                return artifact.sha256, path

            return dict(pool.map(one, todo))
