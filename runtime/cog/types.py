"""Input and output types that predictors annotate with."""

from __future__ import annotations

import io
import pathlib
from typing import Any, AsyncIterator, Generic, Iterator, TypeVar  # collections.abc's: subscriptable from 3.9

Item = TypeVar("Item")


class Path(pathlib.PosixPath):
    """A file input or output. Inputs arrive as local files the runtime downloaded."""


# Models written for older Cog import these names too.
URLPath = Path


class File(io.IOBase):
    """Deprecated in Cog in favour of `Path`: the input arrives as an open binary file."""


URLFile = File


class Secret:
    """A string that never shows itself in reprs, logs or responses."""

    __slots__ = ("_value",)

    def __init__(self, secret_value: str | None = None) -> None:
        self._value = secret_value

    @property
    def secret_value(self) -> str | None:
        return self._value

    def get_secret_value(self) -> str | None:
        return self._value

    def __str__(self) -> str:
        return "**********" if self._value is not None else ""

    def __repr__(self) -> str:
        return f"Secret({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class ConcatenateIterator(Iterator[Item], Generic[Item]):
    """An iterator of text tokens that clients should display joined together."""

    def __next__(self) -> Item:  # pragma: no cover - a marker type
        raise StopIteration


class AsyncConcatenateIterator(AsyncIterator[Item], Generic[Item]):
    """The async form of `ConcatenateIterator`."""

    async def __anext__(self) -> Item:  # pragma: no cover - a marker type
        raise StopAsyncIteration


def is_file_like(value: Any) -> bool:
    return isinstance(value, io.IOBase)
