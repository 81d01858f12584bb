"""A content-addressed file cache: blobs named by their sha256, written atomically, checked on read."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..layers.atomic import atomic_write
from ..layers.descriptor import is_sha256_hex


def default_cache_dir() -> Path:
    """cogbuild's cache root ($COGBUILD_CACHE, else $XDG_CACHE_HOME/cogbuild or ~/.cache/cogbuild)."""
    from ..cache import cache_dir  # the project-wide rule, so every part of cogbuild agrees

    return cache_dir()


class BlobCache:
    """Blobs under `<root>/sha256/<hex>`; a blob whose bytes no longer match its name is dropped."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, sha256: str) -> Path:
        if not is_sha256_hex(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / "sha256" / sha256

    def get(self, sha256: str) -> bytes | None:
        """The blob's bytes, or None when it is absent or corrupt (a corrupt one is removed)."""
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            path.unlink(missing_ok=True)
            return None
        return data

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store data under its hash (computed when not given) and return the hash."""
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        atomic_write(self._path(sha256), data)
        return sha256

    def get_derived(self, name: str) -> bytes | None:
        """A blob reached through a named reference, e.g. a parsed form of another blob."""
        try:
            sha256 = (self.root / "refs" / name).read_text().strip()
        except FileNotFoundError:
            return None
        return self.get(sha256) if is_sha256_hex(sha256) else None

    def put_derived(self, name: str, data: bytes) -> None:
        atomic_write(self.root / "refs" / name, self.put(data).encode())
