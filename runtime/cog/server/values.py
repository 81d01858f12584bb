"""Values across the worker boundary: JSON inputs to Python objects, Python outputs to JSON."""

from __future__ import annotations

import dataclasses
import enum
import io
import os
import pathlib
import tempfile
from typing import Any

from ..signature import InputSpec
from ..types import Path, Secret
from . import protocol


def to_python(spec: InputSpec, value: Any, opened: list[Any]) -> Any:
    """An input as the predictor receives it; files it opens are added to `opened` for closing."""
    if value is None:
        return None
    if spec.is_list:
        return [_one_to_python(spec, v, opened) for v in value]
    return _one_to_python(spec, value, opened)


def _one_to_python(spec: InputSpec, value: Any, opened: list[Any]) -> Any:
    if spec.kind == "path":
        return Path(protocol.marked_path(value) or value)
    if spec.kind == "file":
        handle = open(protocol.marked_path(value) or value, "rb")  # noqa: SIM115 - closed after predict
        opened.append(handle)
        return handle
    if spec.kind == "secret":
        return Secret(value)
    if spec.kind == "float":
        return float(value)
    return value


def to_wire(value: Any, scratch: str) -> Any:
    """An output value as JSON-able data, with files as path markers."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, pathlib.PurePath):
        return protocol.path_marker(os.path.abspath(value))
    if isinstance(value, io.IOBase):
        return protocol.path_marker(_save_file_like(value, scratch))
    if isinstance(value, Secret):
        return value.get_secret_value()
    if isinstance(value, enum.Enum):
        return to_wire(value.value, scratch)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name), scratch) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_wire(v, scratch) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_wire(v, scratch) for v in value]
    if hasattr(value, "model_dump"):  # pydantic v2 models
        return to_wire(value.model_dump(), scratch)
    if hasattr(value, "dict") and hasattr(value, "__fields__"):  # pydantic v1 models
        return to_wire(value.dict(), scratch)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return to_wire(value.tolist(), scratch)
    raise TypeError(f"the predictor returned a {type(value).__name__}, which cannot be sent as output")


def _save_file_like(handle: io.IOBase, scratch: str) -> str:
    name = os.path.basename(str(getattr(handle, "name", "") or "output")) or "output"
    fd, path = tempfile.mkstemp(dir=scratch, suffix="-" + name)
    with os.fdopen(fd, "wb") as out:
        data = handle.read()
        out.write(data.encode() if isinstance(data, str) else data)
    return path
