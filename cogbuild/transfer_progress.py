"""Per-blob byte callbacks (from push_image / pull_image) turned into an occasional one-line message."""

from __future__ import annotations

import threading
import time
from typing import Callable


class TransferProgress:
    """Pass as `progress=`; calls `say` with e.g. "pushed 120.3 / 318.9 MB (2 / 5 blobs)" every `interval` s.

    Totals cover the blobs seen so far; the largest blobs start first, so they are close early on.
    """

    def __init__(self, say: Callable[[str], None], verb: str = "pushed", interval: float = 2.0) -> None:
        self.say = say
        self.verb = verb
        self.interval = interval
        self._blobs: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self._last = time.monotonic()

    def __call__(self, digest: str, done: int, total: int) -> None:
        with self._lock:
            self._blobs[digest] = (done, total)
            now = time.monotonic()
            if now - self._last < self.interval:
                return
            self._last = now
            message = self.summary()
        self.say(message)

    def summary(self) -> str:
        done = sum(d for d, _ in self._blobs.values())
        total = sum(t for _, t in self._blobs.values())
        finished = sum(1 for d, t in self._blobs.values() if d >= t)
        return (f"{self.verb} {done / 1e6:.1f} / {total / 1e6:.1f} MB "
                f"({finished} / {len(self._blobs)} blobs)")
