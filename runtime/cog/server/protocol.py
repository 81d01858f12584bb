"""The server ⇄ worker wire format: one JSON object per line over Unix socket pairs.

Two sockets: predictions (and shutdown) go down the main one, which carries every event back;
cancel and healthcheck go down a control socket that a worker thread reads even while the
main thread is busy in predict().

Each message is a dataclass below; its fields are the JSON object's keys, beside a tag that names
the message: "op" for requests (server → worker), "ev" for events (worker → server).
`encode` and `decode` are the only places where messages become bytes and back, and `decode`
checks every field against its annotation, so a malformed line is one ProtocolError saying what
is wrong, never a KeyError later.

Both sides share a filesystem. File inputs are local paths (the input's type says it is a file).
File outputs travel beside the value, never inside it: `files` lists {"at": [key or index, ...],
"path": "/scratch/…"}, and the value holds null at each such place. Whatever JSON a model returns
is only ever data; only the worker's own encoder writes `files`, and the server takes files from
the worker's scratch directory alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, Tuple, Type, TypeVar, Union

from .status import TERMINAL, PredictionStatus

MAX_LINE = 256 * 1024 * 1024  # an output may be a large in-memory string
OutputFile = Dict[str, Any]  # {"at": [key or index, ...], "path": "/scratch/…"}: see the module's docstring


class ProtocolError(ValueError):
    """A line on the worker channel that is not a well-formed message."""


class Message:
    """A message on the worker channel; `TAG` is "op" or "ev", `KIND` the tag's value."""

    TAG: str
    KIND: str


class Request(Message):
    """Server → worker."""


class Event(Message):
    """Worker → server."""


_DONE_STATUSES = {status.value: status for status in TERMINAL}


def _done_status(value: Any) -> PredictionStatus:
    status = _DONE_STATUSES.get(value) if type(value) is str else None
    if status is None:
        raise ProtocolError(f"a 'done' message has status {value!r}, not succeeded, canceled or failed")
    return status


def _output_files(value: Any) -> list[OutputFile]:
    if value == []:  # the common case, without a generator's cost
        return value
    if type(value) is list and all(type(entry) is dict and type(entry.get("at")) is list
                                   and type(entry.get("path")) is str for entry in value):
        return value
    raise ProtocolError("a message's 'files' is not a list of {\"at\": [...], \"path\": \"...\"}")


# What each field annotation accepts on the wire: the exact JSON types, or a converter (None: anything).
_NONE = type(None)
_WIRE_TYPES: Dict[str, Union[Tuple[type, ...], Callable[[Any], Any], None]] = {
    "str": (str,), "str | None": (str, _NONE), "int": (int,), "bool": (bool,),
    "dict[str, Any]": (dict,), "dict[str, str]": (dict,),
    "Any": None, "PredictionStatus": _done_status, "list[OutputFile]": _output_files,
}


@dataclass
class _Shape:
    """What decode checks for one message class, precomputed (decoding is on every prediction's path)."""

    cls: type
    fields: FrozenSet[str]
    required: FrozenSet[str]
    types: Tuple[Tuple[str, Tuple[type, ...]], ...]  # fields whose JSON type must be one of these
    converters: Tuple[Tuple[str, Callable[[Any], Any]], ...]  # fields turned into Python values

    @classmethod
    def of(cls, message_class: type) -> _Shape:
        fields = dataclasses.fields(message_class)
        wire = {f.name: _WIRE_TYPES[f.type] for f in fields}
        return cls(message_class, frozenset(wire),
                   frozenset(f.name for f in fields
                             if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING),
                   tuple((name, accepted) for name, accepted in wire.items() if isinstance(accepted, tuple)),
                   tuple((name, accepted) for name, accepted in wire.items() if callable(accepted)))


_SHAPES: Dict[Tuple[str, str], _Shape] = {}
M = TypeVar("M", bound=Message)


def _message(kind: str) -> Callable[[Type[M]], Type[M]]:
    """Register a message class under its tag and kind, with the checks for its fields."""

    def register(cls: Type[M]) -> Type[M]:
        cls = dataclass(cls)
        cls.TAG, cls.KIND = ("op" if issubclass(cls, Request) else "ev"), kind
        _SHAPES[cls.TAG, kind] = _Shape.of(cls)
        return cls

    return register


# ---------------------------------------------------------------- server → worker


@_message("predict")
class Predict(Request):
    id: str
    input: dict[str, Any]  # file inputs are local paths
    context: dict[str, str]


@_message("cancel")
class Cancel(Request):
    id: str


@_message("healthcheck")
class HealthcheckRequest(Request):
    id: int  # echoed in the result, so a late answer to an earlier check is not taken for this one


@_message("shutdown")
class Shutdown(Request):
    pass


# ---------------------------------------------------------------- worker → server


@_message("signature")
class SignatureLoaded(Event):
    signature: dict[str, Any]  # Signature.to_json()


@_message("load_failed")
class LoadFailed(Event):
    error: str


@_message("setup_done")
class SetupDone(Event):
    ok: bool
    error: str | None = None


@_message("log")
class Log(Event):
    id: str | None  # None: printed outside any one prediction (setup, or between predictions)
    text: str
    source: str = "stdout"  # or "stderr"


@_message("healthcheck")
class HealthcheckResult(Event):
    id: int
    ok: bool
    error: str | None = None


@_message("output")
class Output(Event):
    """One item of an iterator's output."""

    id: str
    value: Any
    files: list[OutputFile] = field(default_factory=list)


@_message("metric")
class Metric(Event):
    id: str
    name: str
    value: Any
    mode: str  # how the value combines with an earlier one of the same name (see cog.scope)


@_message("done")
class Done(Event):
    id: str
    status: PredictionStatus
    output: Any = None
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    files: list[OutputFile] = field(default_factory=list)


# ---------------------------------------------------------------- the one encoder and decoder


def encode(message: Message) -> bytes:
    """One line of JSON; ValueError or TypeError for a value JSON cannot carry (NaN, a set, …)."""
    body = {message.TAG: message.KIND}
    body.update(message.__dict__)
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes, family: Type[M]) -> M:
    """The message on `line`, which must be one of `family` (Request or Event); ProtocolError if it is not."""
    try:
        body = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"a line is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"a line is a JSON {type(body).__name__}, not a message object")
    tag = "op" if issubclass(family, Request) else "ev"
    kind = body.pop(tag, None)
    shape = _SHAPES.get((tag, kind)) if type(kind) is str else None
    if shape is None:
        raise ProtocolError(f"a message has no known {tag!r} (it has {kind!r})")
    if body.keys() != shape.fields:  # our own encoder writes every field, and nothing else
        _fit_fields(body, shape, kind)
    for name, accepted in shape.types:
        if name in body and type(body[name]) not in accepted:
            expected = " or ".join("null" if t is _NONE else t.__name__ for t in accepted)
            raise ProtocolError(f"a {kind!r} message has {name!r} of type {type(body[name]).__name__}, not {expected}")
    for name, convert in shape.converters:
        if name in body:
            body[name] = convert(body[name])
    return shape.cls(**body)


def _fit_fields(body: dict[str, Any], shape: _Shape, kind: str) -> None:
    """ProtocolError if a required field is missing; drop fields the message does not have."""
    missing = shape.required - body.keys()
    if missing:
        raise ProtocolError(f"a {kind!r} message lacks {sorted(missing)[0]!r}")
    for unknown in body.keys() - shape.fields:
        del body[unknown]
