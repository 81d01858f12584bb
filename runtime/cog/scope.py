"""`current_scope()`: what a running prediction can see about its request."""

from __future__ import annotations

import contextvars
import re
from typing import Any, Callable

MODES = {"replace": "replace", "incr": "increment", "increment": "increment", "append": "append"}
MAX_NAME_LENGTH, MAX_SEGMENTS = 128, 4
_SEGMENT_CHARS = re.compile(r"^[A-Za-z0-9_]*$")
_VALUE_TYPES = (bool, int, float, str, list, dict)

# (name, value, mode) of each recorded metric, as it happens (the worker streams them to SSE clients)
MetricHook = Callable[[str, Any, str], None]


def check_metric_name(name: str, *, deleting: bool = False) -> None:
    """Raise ValueError when `name` breaks Cog's metric naming rules: dot-separated segments
    (at most 4, 128 characters in all), each a letter followed by letters, digits and single
    underscores, ending in a letter or digit; `predict_time` and `cog.*` belong to the runtime."""
    if not deleting and (name == "predict_time" or name.startswith("cog.")):
        raise ValueError(f"metric name {name!r} is reserved: predict_time and the cog. prefix belong to the runtime")
    if not name:
        raise ValueError("a metric name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"metric name is {len(name)} characters long; "
                         f"it may have at most {MAX_NAME_LENGTH} characters")
    segments = name.split(".")
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"metric name {name!r} has {len(segments)} parts; "
                         f"it may have at most {MAX_SEGMENTS} dot-separated segments")
    for index, segment in enumerate(segments):
        if not segment:
            where = ("must not start with a dot" if index == 0 else
                     "must not end with a dot" if index == len(segments) - 1 else
                     "must not contain empty segments (two dots in a row)")
            raise ValueError(f"metric name {name!r} {where}")
        if not segment[0].isascii() or not segment[0].isalpha():
            raise ValueError(f"metric name segment {segment!r} must start with a letter")
        if not _SEGMENT_CHARS.match(segment):
            bad = next(c for c in segment if not (c.isascii() and (c.isalnum() or c == "_")))
            raise ValueError(f"metric name segment {segment!r} has the character {bad!r}; "
                             "use letters, digits and underscores")
        if "__" in segment:
            raise ValueError(f"metric name segment {segment!r} must not contain consecutive underscores")
        if segment.endswith("_"):
            raise ValueError(f"metric name segment {segment!r} must end with a letter or digit")


class Metrics(dict):
    """Metrics a prediction records; they end up in the response's `metrics`.

    A dotted name (`timing.preprocess`) is stored as nested objects, as Cog does."""

    def __init__(self, on_record: MetricHook | None = None) -> None:
        super().__init__()
        self.on_record = on_record

    def record(self, key: str, value: Any, mode: str = "replace") -> None:
        if mode not in MODES:
            raise ValueError(f"metric mode must be replace, incr or append, not {mode!r}")
        if value is None:
            self.delete(key)
            return
        check_metric_name(key)
        if not isinstance(value, _VALUE_TYPES):
            raise TypeError(f"metric {key!r} is a {type(value).__name__}; use bool, int, float, str, list or dict")
        if MODES[mode] == "increment" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"metric {key!r}: mode 'incr' needs an int or float, not {type(value).__name__}")
        parent, leaf = self._parent(key.split("."), create=True)
        current = parent.get(leaf)
        if MODES[mode] == "increment":
            numeric = isinstance(current, (int, float)) and not isinstance(current, bool)
            stored = current + value if numeric else value
        elif MODES[mode] == "append":
            stored = (current if isinstance(current, list) else [] if current is None else [current]) + [value]
        else:
            stored = value
        dict.__setitem__(parent, leaf, stored)  # the plain method: Metrics' own validates again
        if self.on_record is not None:
            self.on_record(key, value, MODES[mode])

    def delete(self, key: str) -> None:
        check_metric_name(key, deleting=True)
        parent, leaf = self._parent(key.split("."), create=False)
        if parent is not None and leaf in parent:
            dict.__delitem__(parent, leaf)
        if self.on_record is not None:
            self.on_record(key, None, "replace")

    def _parent(self, parts: list[str], *, create: bool) -> tuple[Any, str]:
        node: dict = self
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                if not create:
                    return None, parts[-1]
                child = {}
                dict.__setitem__(node, part, child)
            node = child
        return node, parts[-1]

    def __setitem__(self, key: str, value: Any) -> None:
        self.record(key, value)

    def __delitem__(self, key: str) -> None:
        self.delete(key)



class Scope:
    def __init__(self, prediction_id: str | None = None, context: dict | None = None,
                 on_metric: MetricHook | None = None) -> None:
        self.prediction_id = prediction_id
        self.context: dict[str, str] = dict(context or {})
        self.metrics = Metrics(on_metric)

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
