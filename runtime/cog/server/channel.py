"""The worker's side of the sockets, and the streams that turn a predictor's prints into log events."""

from __future__ import annotations

import contextvars
import io
import socket
import threading
from typing import TYPE_CHECKING, Callable

from . import protocol

if TYPE_CHECKING:
    from .worker import Worker

# The prediction a piece of code runs for; async predictions each set it in their own task.
current_prediction_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("cog_prediction_id", default=None)


class Channel:
    """The worker's end of the socket: thread-safe sends, blocking line reads."""

    def __init__(self, fd: int) -> None:
        self.sock = socket.socket(fileno=fd)
        self.reader = self.sock.makefile("rb")
        self.lock = threading.Lock()
        # A cancel signal must not cut a message in half: while the main thread is writing,
        # the signal handler leaves its action here and send() runs it once the write is done.
        self.main_sending = False
        self.deferred: Callable[[], None] | None = None

    def send(self, message: protocol.Event) -> None:
        data = protocol.encode(message)
        on_main = threading.get_ident() == threading.main_thread().ident
        with self.lock:
            self.main_sending = on_main
            try:
                self.sock.sendall(data)
            finally:
                self.main_sending = False
        if on_main and self.deferred is not None:
            action, self.deferred = self.deferred, None
            action()

    def receive(self) -> protocol.Request | None:
        """The server's next request; None once it closed the socket. ProtocolError for a malformed line."""
        line = self.reader.readline()
        return protocol.decode(line, protocol.Request) if line else None


class LogStream(io.TextIOBase):
    """Replaces sys.stdout/sys.stderr: each write becomes a log event of the current prediction."""

    LIMIT = 8192  # send a partial line once this much has piled up

    def __init__(self, channel: Channel, worker: Worker, source: str = "stdout") -> None:
        self.channel, self.worker, self.source = channel, worker, source
        self.buffer = _BinaryLog(self)  # for code that writes bytes to sys.stdout.buffer
        # Line-buffered per prediction: print() makes two writes, and a message per write is costly.
        self._pending: dict[str | None, str] = {}
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not text:
            return 0
        pid = current_prediction_id.get() or self.worker.sole_prediction()
        with self._lock:
            pending = self._pending.pop(pid, "") + text
            if "\n" not in text and len(pending) < self.LIMIT:
                self._pending[pid] = pending
                return len(text)
        self._send(pid, pending)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for pid, text in pending.items():
            self._send(pid, text)

    def flush_prediction(self, pid: str | None) -> None:
        """Send what a prediction printed without a final newline (before it reports done)."""
        with self._lock:
            text = self._pending.pop(pid, None)
        if text:
            self._send(pid, text)

    def _send(self, pid: str | None, text: str) -> None:
        self.channel.send(protocol.Log(pid, text, self.source))

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


class _BinaryLog(io.RawIOBase):
    def __init__(self, text: LogStream) -> None:
        self.text = text

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.text.write(bytes(data).decode(errors="replace"))
        return len(data)
