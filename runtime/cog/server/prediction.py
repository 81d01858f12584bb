"""One prediction's state, as the API reports it."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

from .status import PredictionStatus
SECRET_MASK = "**********"


class LogBuffer:
    """Append-only text, cheap to grow: chunks are joined only when read (no quadratic +=)."""

    def __init__(self, text: str = "") -> None:
        self._chunks = [text] if text else []

    def append(self, text: str) -> None:
        self._chunks.append(text)

    def text(self) -> str:
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""


def json_text(value: Any) -> str:
    """JSON as Cog writes it on the wire: compact (clients grep for `"status":"succeeded"`)."""
    return json.dumps(value, separators=(",", ":"))


class StreamHistory:
    """The last events of a prediction, replayed to a client that subscribes late."""

    def __init__(self, capacity: int) -> None:
        self.events: collections.deque = collections.deque(maxlen=capacity or None)
        self.capacity = capacity
        self.dropped = 0

    def add(self, event: tuple[str, Any]) -> None:
        if self.capacity <= 0:
            return
        if len(self.events) == self.capacity:
            self.dropped += 1
        self.events.append(event)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


@dataclass
class Prediction:
    id: str
    input: dict[str, Any]  # as the client sent it, secrets masked
    webhook: str | None = None
    webhook_events_filter: tuple[str, ...] = ("start", "output", "logs", "completed")
    output_file_prefix: str | None = None
    context: dict[str, str] = field(default_factory=dict)
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    status: PredictionStatus = PredictionStatus.STARTING
    output: Any = None
    error: str | None = None
    log_buffer: LogBuffer = field(default_factory=LogBuffer)
    metrics: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # values to redact from logs
    streams: bool = False  # iterator output: `output` is a growing list
    cancel_requested: bool = False
    raw_files: bool = False  # keep a lone output file as a local path (the seed's /predict)
    output_file: str | None = None  # that path, in the worker's scratch
    scheduled: bool = False  # handed to a run task, which finishes it whatever happens
    _started: float = 0.0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    listeners: list[asyncio.Queue] = field(default_factory=list)
    history: StreamHistory = field(default_factory=lambda: StreamHistory(0))
    temp_paths: list[str] = field(default_factory=list)

    @property
    def logs(self) -> str:
        return self.log_buffer.text()

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def start(self) -> None:
        self.status = PredictionStatus.PROCESSING
        self.started_at = now_iso()
        self._started = time.monotonic()
        if self.streams:
            self.output = []

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, SECRET_MASK)
        return text

    def add_log(self, text: str) -> str:
        text = self.redact(text)
        self.log_buffer.append(text)
        return text

    def finish(self, status: PredictionStatus, error: str | None = None) -> None:
        if self.is_terminal:
            return
        self.status = status
        self.error = self.redact(error) if error else error
        self.completed_at = now_iso()
        if self._started:
            self.metrics["predict_time"] = round(time.monotonic() - self._started, 6)

    def notify(self, event: str, payload: Any = None) -> None:
        """An event for server-sent-event clients, now and (from the history) later."""
        self.history.add((event, payload))
        for listener in list(self.listeners):
            listener.put_nowait((event, payload))

    def subscribe(self) -> tuple[list[tuple[str, Any]], int, asyncio.Queue]:
        """(past events to replay, how many were dropped from the history, a queue of new ones)."""
        queue: asyncio.Queue = asyncio.Queue()
        self.listeners.append(queue)
        return list(self.history.events), self.history.dropped, queue

    def to_json(self) -> dict[str, Any]:
        body = {
            "id": self.id, "input": self.input, "output": self.output, "status": self.status,
            "error": self.error, "logs": self.logs, "metrics": self.metrics,
            "created_at": self.created_at, "started_at": self.started_at, "completed_at": self.completed_at,
        }
        if self.webhook:
            body["webhook"] = self.webhook
        return body
