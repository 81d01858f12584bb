"""Which repositories of a registry are known to hold a blob: hints for cross-repository mounts.

A hint that turns out wrong costs nothing (the registry then opens an ordinary upload), so a damaged
file is simply ignored and rewritten.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from cogbuild.layers.atomic import atomic_write

_MAX_DIGESTS = 20000


class BlobLocations:
    """digest → repositories, for one registry, persisted as a small JSON file in `root` (the caller's
    choice: cogbuild keeps it in its cache); with no root, known for this process only."""

    def __init__(self, registry: str, root: Path | None = None) -> None:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", registry)
        self.path = root / f"{safe}.json" if root is not None else None
        self._lock = threading.Lock()
        self._known: dict[str, list[str]] = self._load()

    def _load(self) -> dict[str, list[str]]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: [r for r in v if isinstance(r, str)] for k, v in data.items() if isinstance(v, list)}

    def sources(self, digest: str) -> list[str]:
        with self._lock:
            return list(self._known.get(digest, []))

    def remember(self, repository: str, digests: list[str]) -> None:
        with self._lock:
            for digest in digests:
                repos = self._known.setdefault(digest, [])
                if repository in repos:
                    repos.remove(repository)
                repos.insert(0, repository)  # most recent first
                del repos[8:]
            while len(self._known) > _MAX_DIGESTS:
                self._known.pop(next(iter(self._known)))

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            data = json.dumps(self._known, separators=(",", ":")).encode()
        try:
            atomic_write(self.path, data)
        except OSError:
            pass  # only a hint; a read-only cache must not fail a push
