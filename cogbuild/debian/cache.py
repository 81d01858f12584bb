"""A content-addressed file cache: blobs named by their sha256, written atomically, checked on read."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def default_cache_dir() -> Path:
    """cogbuild's cache root ($COGBUILD_CACHE, else $XDG_CACHE_HOME/cogbuild or ~/.cache/cogbuild)."""
    from ..cache import cache_dir  # the project-wide rule, so every part of cogbuild agrees

    return cache_dir()


class BlobCache:
    """Blobs under `<root>/sha256/<hex>`; a blob whose bytes no longer match its name is dropped."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, sha256: str) -> Path:
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

    def put(self, data: bytes, sha256: str) -> None:
        """Store data under its hash; the caller has already checked that the hash is right."""
        path = self._path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename, so readers never see a partial blob.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
