"""The `cog` SDK: what a predictor imports. Kept cheap to import (no server code)."""

from __future__ import annotations

import inspect as _inspect
from typing import Any, Callable, TypeVar

from ._version import __version__
from .errors import CancelationException, ExperimentalFeatureWarning
from .input import FieldInfo, Input
from .model import BaseModel
from .predictor import BasePredictor, BaseRunner, Model, input
from .scope import Scope, current_scope, emit_metric
from .types import AsyncConcatenateIterator, ConcatenateIterator, File, Path, Secret, URLFile, URLPath

_F = TypeVar("_F", bound=Callable[..., Any])


def concurrent(fn: _F | None = None, *, max: int = 1) -> Any:  # noqa: A002 - Cog's keyword
    """Allow up to `max` concurrent predictions of an async predict function."""
    if isinstance(max, bool) or not isinstance(max, int) or max < 1:
        raise ValueError("concurrent(max=...) must be a positive integer")

    def decorate(inner: _F) -> _F:
        is_async = _inspect.iscoroutinefunction(inner) or _inspect.isasyncgenfunction(inner)
        if max > 1 and not is_async:
            raise TypeError("concurrent(max>1) needs an async predict function")
        inner.__cog_concurrent_max__ = max  # type: ignore[attr-defined]
        return inner

    return decorate if fn is None else decorate(fn)


def streaming(fn: _F | None = None) -> Any:
    """Let clients ask for this predictor's results as server-sent events (`Accept: text/event-stream`)."""

    def decorate(inner: _F) -> _F:
        inner.__cog_streaming__ = True  # type: ignore[attr-defined]
        return inner

    return decorate if fn is None else decorate(fn)


__all__ = [
    "__version__", "AsyncConcatenateIterator", "BaseModel", "BasePredictor", "BaseRunner",
    "CancelationException", "ConcatenateIterator", "ExperimentalFeatureWarning", "FieldInfo", "File",
    "Input", "Model", "Path", "Scope", "Secret", "URLFile", "URLPath", "concurrent", "current_scope",
    "emit_metric", "input", "streaming",
]
