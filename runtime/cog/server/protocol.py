"""The server ⇄ worker wire format: one JSON object per line over Unix socket pairs.

Two sockets: predictions (and shutdown) go down the main one, which carries every event back;
cancel and healthcheck go down a control socket that a worker thread reads even while the
main thread is busy in predict().

server → worker:  {"op": "predict", "id", "input", "context"} | {"op": "cancel", "id"}
                  {"op": "healthcheck", "id"} | {"op": "shutdown"}
worker → server:  {"ev": "signature", "signature"} | {"ev": "load_failed", "error"}
                  {"ev": "setup_done", "ok", "error"} | {"ev": "log", "id", "text"}
                  {"ev": "healthcheck", "id", "ok", "error"} | {"ev": "output", "id", "value"} | {"ev": "done", "id", "status", "output", "error", "metrics"}

File values cross the boundary as {PATH_KEY: "/absolute/path"}: both sides share a filesystem.
"""

from __future__ import annotations

import json
from typing import Any

PATH_KEY = "$cog.path"
MAX_LINE = 256 * 1024 * 1024  # an output may be a large in-memory string


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    return json.loads(line)


def path_marker(path: str) -> dict[str, str]:
    return {PATH_KEY: path}


def marked_path(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1 and PATH_KEY in value:
        return value[PATH_KEY]
    return None
