"""Webhooks for async predictions: `start`, `output`, `logs`, `completed`.

Intermediate events are throttled (at most one per interval, the last state always sent)
and tried once; the terminal one is retried with backoff on 429, 5xx and connection errors.
Failures are logged and never raised: a dead webhook never hurts the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import Any

import aiohttp

from .prediction import Prediction, json_text
from .urls import UrlError, UrlPolicy, redact, scrub

RETRY_STATUSES = {429, 500, 502, 503, 504}
DRAIN_TIMEOUT = 30.0  # at shutdown, how long queued webhooks may still take


class _Stream:
    """Per-prediction ordering and throttling state."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.last_sent = 0.0
        self.trailing: asyncio.TimerHandle | None = None


class WebhookSender:
    def __init__(self, session: aiohttp.ClientSession, policy: UrlPolicy, *, interval: float | None = None,
                 retries: int | None = None, backoff: float | None = None, timeout: float = 10.0) -> None:
        self.session, self.policy = session, policy
        self.interval = interval if interval is not None else float(os.environ.get("COG_WEBHOOK_INTERVAL", "0.5"))
        self.retries = retries if retries is not None else int(os.environ.get("COG_WEBHOOK_RETRIES", "6"))
        self.backoff = backoff if backoff is not None else float(os.environ.get("COG_WEBHOOK_BACKOFF", "0.5"))
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._streams: dict[str, _Stream] = {}
        self._tasks: set[asyncio.Task] = set()

    def notify(self, prediction: Prediction, event: str) -> None:
        """Queue a webhook for `event` if the prediction asked for it."""
        if not prediction.webhook:
            return
        stream = self._streams.setdefault(prediction.id, _Stream())
        if event == "completed":  # always ends the stream; sent only if the filter wants it
            if stream.trailing is not None:
                stream.trailing.cancel()
            self._spawn(self._send(prediction, stream, terminal=True))
            return
        if event not in prediction.webhook_events_filter:
            return
        wait = stream.last_sent + self.interval - time.monotonic()
        if event == "start" or wait <= 0:
            stream.last_sent = time.monotonic()
            self._spawn(self._send(prediction, stream, terminal=False))
        elif stream.trailing is None:
            stream.trailing = asyncio.get_running_loop().call_later(wait, self._send_trailing, prediction, stream)

    def _send_trailing(self, prediction: Prediction, stream: _Stream) -> None:
        stream.trailing = None
        if not prediction.is_terminal:
            stream.last_sent = time.monotonic()
            self._spawn(self._send(prediction, stream, terminal=False))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, prediction: Prediction, stream: _Stream, *, terminal: bool) -> None:
        async with stream.lock:  # keeps webhooks of one prediction in order
            body = json_text(prediction.to_json())  # the state at send time
            if terminal and "completed" not in prediction.webhook_events_filter:
                self._streams.pop(prediction.id, None)
                return
            attempts = 1 + (self.retries if terminal else 0)
            for attempt in range(attempts):
                if await self._post(prediction.webhook, body) or attempt == attempts - 1:
                    break
                await asyncio.sleep(self.backoff * 2 ** attempt)
            if terminal:
                self._streams.pop(prediction.id, None)

    async def _post(self, url: str | None, body: str) -> bool:
        """True when done (delivered, or failed in a way a retry will not fix)."""
        try:
            await self.policy.check(url)
            async with self.session.post(url, data=body, timeout=self.timeout, allow_redirects=False,
                                         headers={"Content-Type": "application/json"}) as response:
                if response.status in RETRY_STATUSES:
                    print(f"cog: webhook {redact(url)} answered {response.status}; will retry", file=sys.stderr)
                    return False
                return True
        except UrlError as exc:
            print(f"cog: webhook not sent: {exc}", file=sys.stderr)
            return True
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            reason = scrub(str(exc), url) or type(exc).__name__  # aiohttp's messages may quote the URL
            print(f"cog: webhook {redact(url)} failed: {reason}", file=sys.stderr)
            return False

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Wait for queued webhooks (used at shutdown)."""
        if self._tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout)
