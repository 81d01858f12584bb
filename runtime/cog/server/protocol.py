"""The server ⇄ worker wire format: one JSON object per line over Unix socket pairs.

Two sockets: predictions (and shutdown) go down the main one, which carries every event back;
cancel and healthcheck go down a control socket that a worker thread reads even while the
main thread is busy in predict().

server → worker:  {"op": "predict", "id", "input", "context"} | {"op": "cancel", "id"}
                  {"op": "healthcheck", "id"} | {"op": "shutdown"}
worker → server:  {"ev": "signature", "signature"} | {"ev": "load_failed", "error"}
                  {"ev": "setup_done", "ok", "error"} | {"ev": "log", "id", "text", "source"}
                  {"ev": "healthcheck", "id", "ok", "error"} | {"ev": "output", "id", "value", "files"}
                  {"ev": "metric", "id", "name", "value", "mode"}
                  {"ev": "done", "id", "status", "output", "error", "metrics", "files"}

Both sides share a filesystem. File inputs are local paths (the input's type says it is a file).
File outputs travel beside the value, never inside it: `files` lists {"at": [key or index, ...],
"path": "/scratch/…"}, and the value holds null at each such place. Whatever JSON a model returns
is only ever data; only the worker's own encoder writes `files`, and the server takes files from
the worker's scratch directory alone.
"""

from __future__ import annotations

import json
from typing import Any

MAX_LINE = 256 * 1024 * 1024  # an output may be a large in-memory string


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    return json.loads(line)
