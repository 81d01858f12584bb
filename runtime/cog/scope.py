"""`current_scope()`: what a running prediction can see about its request."""

from __future__ import annotations

import contextvars
from typing import Any


class Metrics(dict):
    """Metrics a prediction records; they end up in the response's `metrics`."""

    def record(self, key: str, value: Any, mode: str = "replace") -> None:
        if mode not in ("replace", "incr", "append"):
            raise ValueError(f"metric mode must be replace, incr or append, not {mode!r}")
        if key == "predict_time" or key.startswith("cog."):
            raise ValueError(f"metric name {key!r} is reserved")
        if value is None:
            self.pop(key, None)
        elif mode == "incr":
            self[key] = self.get(key, 0) + value
        elif mode == "append":
            self.setdefault(key, []).append(value)
        else:
            self[key] = value


class Scope:
    def __init__(self, prediction_id: str | None = None, context: dict | None = None) -> None:
        self.prediction_id = prediction_id
        self.context: dict[str, str] = dict(context or {})
        self.metrics = Metrics()

    def record_metric(self, key: str, value: Any, mode: str = "replace") -> None:
        self.metrics.record(key, value, mode)


_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("cog_scope", default=None)


def current_scope() -> Scope:
    """The running prediction's scope; outside a prediction, an empty throwaway one."""
    scope = _current.get()
    return scope if scope is not None else Scope()


def enter_scope(scope: Scope) -> contextvars.Token:
    return _current.set(scope)


def exit_scope(token: contextvars.Token) -> None:
    _current.reset(token)


def emit_metric(name: str, value: Any) -> None:
    """Older Cog API; same as `current_scope().record_metric(name, value)`."""
    current_scope().record_metric(name, value)
