"""Values across the worker boundary: JSON inputs to Python objects, Python outputs to JSON."""

from __future__ import annotations

import dataclasses
import enum
import io
import os
import pathlib
import shutil
import tempfile
from typing import Any

from ..signature import InputSpec
from ..types import Path, Secret
from .protocol import OutputFile


def to_python(spec: InputSpec, value: Any, opened: list[Any]) -> Any:
    """An input as the predictor receives it; files it opens are added to `opened` for closing."""
    if value is None:
        return None
    if spec.is_list:
        return [_one_to_python(spec, v, opened) for v in value]
    return _one_to_python(spec, value, opened)


def _one_to_python(spec: InputSpec, value: Any, opened: list[Any]) -> Any:
    if spec.kind == "path":
        return Path(value)
    if spec.kind == "file":
        handle = open(value, "rb")  # noqa: SIM115 - closed after predict
        opened.append(handle)
        return handle
    if spec.kind == "secret":
        return Secret(value)
    if spec.kind == "float":
        return float(value)
    return value


def to_wire(value: Any, scratch: str) -> tuple[Any, list[OutputFile]]:
    """An output value as JSON-able data, and its files (see protocol.py): each file is placed in
    `scratch` and named in the list with where it goes; the data holds None in its place."""
    files: list[OutputFile] = []
    return _encode(value, scratch, [], files), files


def _encode(value: Any, scratch: str, at: list, files: list[OutputFile]) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (pathlib.PurePath, io.IOBase)):
        files.append({"at": list(at), "path": _into_scratch(value, scratch)})
        return None
    if isinstance(value, Secret):
        return str(value)  # masked, as Cog answers
    if isinstance(value, enum.Enum):
        return _encode(value.value, scratch, at, files)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    elif hasattr(value, "model_dump"):  # pydantic v2 models
        value = value.model_dump()
    elif hasattr(value, "dict") and hasattr(value, "__fields__"):  # pydantic v1 models
        value = value.dict()
    elif hasattr(value, "tolist"):  # numpy arrays and scalars
        return _encode(value.tolist(), scratch, at, files)
    if isinstance(value, dict):
        return {str(k): _encode(v, scratch, [*at, str(k)], files) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_encode(v, scratch, [*at, i], files) for i, v in enumerate(value)]
    raise TypeError(f"the predictor returned a {type(value).__name__}, which cannot be sent as output")


def _into_scratch(value: pathlib.PurePath | io.IOBase, scratch: str) -> str:
    """A copy of the output file in a directory of its own in scratch, under its own name
    (the name picks the upload's name and MIME type). Paths are hard-linked when they can be."""
    source = str(value) if isinstance(value, pathlib.PurePath) else str(getattr(value, "name", "") or "output")
    path = os.path.join(tempfile.mkdtemp(dir=scratch), os.path.basename(source) or "output")
    if isinstance(value, io.IOBase):
        with open(path, "wb") as out:
            data = value.read()
            out.write(data.encode() if isinstance(data, str) else data)
        return path
    if not os.path.isfile(source):
        raise ValueError(f"the output file {source} does not exist or is not a regular file")
    try:
        os.link(source, path)
    except OSError:  # another filesystem, or not ours to link
        shutil.copyfile(source, path)
    return path
