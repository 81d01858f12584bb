"""Read a predictor's signature: its inputs, output type and calling style.

The result is plain data (`Signature.to_json`), so the worker process that imported
the model can hand it to the server process, which validates requests with it.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import pathlib
import re
import types as pytypes
import typing
from collections import abc
from dataclasses import dataclass
from typing import Any, Callable

from .errors import PredictorError
from .input import MISSING, FieldInfo
from .types import AsyncConcatenateIterator, ConcatenateIterator, File, Path, Secret

INPUT_KINDS: dict[Any, str] = {
    str: "str", int: "int", float: "float", bool: "bool",
    Path: "path", pathlib.Path: "path", File: "file", Secret: "secret",
}
FILE_KINDS = ("path", "file")
# Python 3.10+ also spells Optional[T] as `T | None`; 3.8 has no typing.Annotated (then nothing is annotated).
_UNIONS = (typing.Union, getattr(pytypes, "UnionType", typing.Union))
_ANNOTATED = getattr(typing, "Annotated", None)
UNION_KINDS = ("str", "int", "float", "bool")
_ITERATORS = (abc.Iterator, abc.Iterable, abc.Generator)
_ASYNC_ITERATORS = (abc.AsyncIterator, abc.AsyncIterable, abc.AsyncGenerator)


@dataclass
class InputSpec:
    """One input parameter, as the server needs it to validate requests."""

    name: str
    order: int
    kind: str  # one of INPUT_KINDS' values
    is_list: bool = False
    nullable: bool = False
    required: bool = True
    default: Any = None
    description: str | None = None
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    regex: str | None = None
    choices: list | None = None
    deprecated: bool | None = None
    members: list[str] | None = None  # kind "union": the member kinds, as in `str | float`
    whole_list_members: bool = False  # `list[int] | list[float]`: the list as a whole is one member's

    @property
    def is_file(self) -> bool:
        return self.kind in FILE_KINDS


@dataclass
class Signature:
    inputs: list[InputSpec]
    output_schema: dict
    is_async: bool = False
    is_iterator: bool = False
    streaming: bool = False  # @cog.streaming: clients may ask for server-sent events
    max_concurrency: int = 1
    setup_takes_weights: bool = False
    has_healthcheck: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Signature:
        inputs = [InputSpec(**spec) for spec in data["inputs"]]
        return cls(**{**data, "inputs": inputs})

    def input(self, name: str) -> InputSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)


# ---------------------------------------------------------------- input types


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in _UNIONS


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None was part of it); a union of several types stays one."""
    if _is_union(annotation):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        return (members[0] if len(members) == 1 else typing.Union[tuple(members)]), nullable
    return annotation, False


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (list, typing.List) or annotation in (list, typing.List)


def _list_item(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    if not args:
        raise PredictorError("list inputs need an item type, like list[str]")
    return _strip_annotated(args[0])


def _union_kinds(members: tuple) -> list[str]:
    """Member kinds of an input union: JSON-native types only (a value's JSON type picks the member)."""
    kinds = [_lookup(INPUT_KINDS, _strip_annotated(m)) for m in members]
    if any(kind not in UNION_KINDS for kind in kinds):
        raise PredictorError(f"a union input may combine only str, int, float and bool "
                             f"({' | '.join(getattr(m, '__name__', str(m)) for m in members)})")
    return kinds


def _strip_annotated(annotation: Any) -> Any:
    while _ANNOTATED is not None and typing.get_origin(annotation) is _ANNOTATED:
        annotation = typing.get_args(annotation)[0]
    return annotation


@dataclass
class _InputType:
    kind: str
    is_list: bool = False
    nullable: bool = False
    members: list[str] | None = None
    whole_list_members: bool = False


def _input_kind(annotation: Any) -> _InputType:
    """What an input annotation accepts, or PredictorError."""
    annotation, nullable = _strip_optional(_strip_annotated(annotation))
    if _is_union(annotation):
        members = typing.get_args(annotation)
        if all(_is_list(m) for m in members):  # list[int] | list[float]
            kinds = _union_kinds(tuple(_list_item(m) for m in members))
            return _InputType("union", True, nullable, kinds, whole_list_members=True)
        return _InputType("union", False, nullable, _union_kinds(members))
    is_list = False
    if _is_list(annotation):
        annotation, is_list = _list_item(annotation), True
        if _is_union(annotation):  # list[str | float]
            item, item_nullable = _strip_optional(annotation)
            if item_nullable:
                raise PredictorError("list items may not be None")
            if _is_union(item):
                return _InputType("union", True, nullable, _union_kinds(typing.get_args(item)))
            annotation = item
    kind = _lookup(INPUT_KINDS, annotation)
    if kind is not None:
        return _InputType(kind, is_list, nullable)
    if is_list and typing.get_origin(annotation) in (list, typing.List):
        raise PredictorError("nested lists are not supported")
    raise PredictorError(f"type {getattr(annotation, '__name__', annotation)!s} is not supported; "
                         "use str, int, float, bool, cog.Path, cog.File, cog.Secret, Optional or list of these")


def _lookup(table: dict, annotation: Any) -> Any:
    try:
        return table.get(annotation)
    except TypeError:  # an unhashable annotation object
        return None


def _json_default(kind: str, value: Any) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, Secret):
        return value.get_secret_value()
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_default(kind, v) for v in value]
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _check_constraints(spec: InputSpec) -> None:
    """Reject constraints that cannot apply to the type, and defaults that break them."""
    if (spec.ge is not None or spec.le is not None) and spec.kind not in ("int", "float"):
        raise PredictorError("ge/le (min/max) only apply to int and float inputs")
    if (spec.min_length is not None or spec.max_length is not None or spec.regex) and spec.kind != "str":
        raise PredictorError("min_length, max_length and regex only apply to str inputs")
    if spec.regex:
        try:
            re.compile(spec.regex)
        except re.error as exc:
            raise PredictorError(f"regex {spec.regex!r} is not valid ({exc})") from None
    if spec.choices is not None:
        if spec.kind not in ("str", "int", "float"):
            raise PredictorError("choices only apply to str, int and float inputs")
        for choice in spec.choices:
            if problem := check_value(spec, choice, check_choices=False):
                raise PredictorError(f"choice {choice!r} is not valid: {problem}")
    if spec.default is not None:
        values = spec.default if spec.is_list and isinstance(spec.default, list) else [spec.default]
        if spec.is_list and not isinstance(spec.default, list):
            raise PredictorError(f"default {spec.default!r} is not a list")
        for value in values:
            if problem := check_value(spec, value):
                raise PredictorError(f"default {value!r} is not valid: {problem}")


def check_value(spec: InputSpec, value: Any, *, check_choices: bool = True) -> str | None:
    """Why one (non-list) value does not fit the input, or None when it does."""
    problem = value_problem(spec, value, check_choices=check_choices)
    return problem[1] if problem else None


def fits_kind(kind: str, value: Any) -> bool:
    """Whether a JSON value has the type of an input kind."""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":  # 3.0 is accepted as 3 (JSON encoders may write integral floats)
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "float":  # Infinity and NaN are not JSON numbers, though Python's parser takes them
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, str)  # str, path, file, secret travel as strings


def value_problem(spec: InputSpec, value: Any, *, check_choices: bool = True) -> tuple[str, str] | None:
    """(error type, message) when one (non-list) value does not fit the input, in pydantic's words."""
    kind = spec.kind
    if kind == "union":
        members = spec.members or []
        if not any(fits_kind(member, value) for member in members):
            return "type_error.union", f"value is not a valid {' | '.join(members)}"
        return None
    if not fits_kind(kind, value):
        name = {"int": "integer", "float": "float", "bool": "boolean"}.get(kind, "str")
        return f"type_error.{name}", f"value is not a valid {'string' if name == 'str' else name}"
    if spec.ge is not None and value < spec.ge:
        return "value_error.number.not_ge", f"ensure this value is greater than or equal to {_num(spec.ge)}"
    if spec.le is not None and value > spec.le:
        return "value_error.number.not_le", f"ensure this value is less than or equal to {_num(spec.le)}"
    if spec.min_length is not None and len(value) < spec.min_length:
        return "value_error.any_str.min_length", f"ensure this value has at least {spec.min_length} characters"
    if spec.max_length is not None and len(value) > spec.max_length:
        return "value_error.any_str.max_length", f"ensure this value has at most {spec.max_length} characters"
    if spec.regex and not re.search(spec.regex, value):
        return "value_error.str.regex", f'string does not match regex "{spec.regex}"'
    if check_choices and spec.choices is not None and value not in spec.choices:
        permitted = ", ".join(repr(c) for c in spec.choices)
        return "type_error.enum", f"value is not a valid enumeration member; permitted: {permitted}"
    return None


def _num(x: float) -> Any:
    return int(x) if float(x).is_integer() else x


def _make_spec(name: str, order: int, annotation: Any, info: FieldInfo) -> InputSpec:
    accepted = _input_kind(annotation)
    kind, nullable = accepted.kind, accepted.nullable
    has_default = info.default is not MISSING
    default = _json_default(kind, info.default) if has_default else None
    spec = InputSpec(
        name=name, order=order, kind=kind, is_list=accepted.is_list, members=accepted.members,
        whole_list_members=accepted.whole_list_members,
        nullable=nullable or (has_default and default is None),
        required=not has_default and not nullable,
        default=default, description=info.description,
        ge=info.ge, le=info.le, min_length=info.min_length, max_length=info.max_length,
        regex=info.regex, deprecated=info.deprecated,
        choices=None if info.choices is None else [_json_default(kind, c) for c in info.choices],
    )
    _check_constraints(spec)
    return spec


def read_inputs(fn: Callable[..., Any]) -> list[InputSpec]:
    """Inputs of a Cog-style predict/run function, in parameter order."""
    if getattr(fn, "_cog_inputs", None) is not None:
        return _read_seed_inputs(fn)
    hints = _type_hints(fn)
    specs = []
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    for order, param in enumerate(params):
        where = f"parameter {param.name!r} of {fn.__qualname__}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise PredictorError(f"{where} is *args/**kwargs, which cannot be described as an input")
        if param.name not in hints:
            raise PredictorError(f"{where} has no type annotation")
        default = param.default
        info = default if isinstance(default, FieldInfo) else FieldInfo(
            default=MISSING if default is inspect.Parameter.empty else default)
        try:
            specs.append(_make_spec(param.name, order, hints[param.name], info))
        except PredictorError as exc:
            raise PredictorError(f"{where}: {exc}") from None
    return specs


def _read_seed_inputs(fn: Callable[..., Any]) -> list[InputSpec]:
    specs = []
    for order, declared in enumerate(fn._cog_inputs):  # type: ignore[attr-defined]
        info = FieldInfo(default=declared["default"], description=declared["help"],
                         ge=declared["min"], le=declared["max"], choices=declared["options"])
        try:
            specs.append(_make_spec(declared["name"], order, declared["type"], info))
        except PredictorError as exc:
            raise PredictorError(f"input {declared['name']!r} of {fn.__qualname__}: {exc}") from None
    return specs


def _type_hints(obj: Any) -> dict[str, Any]:
    try:
        if _ANNOTATED is None:  # Python 3.8: no Annotated, so no extras to keep
            return typing.get_type_hints(obj)
        return typing.get_type_hints(obj, include_extras=True)
    except Exception as exc:  # NameError for unresolvable string annotations, among others
        raise PredictorError(f"cannot read the type annotations of {obj.__qualname__}: {exc}") from None


# ---------------------------------------------------------------- output types

_PRIMITIVE_SCHEMAS = {
    str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"},
    Path: {"type": "string", "format": "uri"}, pathlib.Path: {"type": "string", "format": "uri"},
    File: {"type": "string", "format": "uri"},
    Secret: {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True},
}


def title(name: str) -> str:
    return name.replace("_", " ").title()


def value_schema(annotation: Any) -> dict:
    """JSON schema of an output value type (lenient: unknown types give an open schema)."""
    annotation = _strip_annotated(annotation)
    primitive = _lookup(_PRIMITIVE_SCHEMAS, annotation)
    if primitive is not None:
        return dict(primitive)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in _UNIONS:
        inner, nullable = _strip_optional(annotation)
        schema = {"anyOf": [value_schema(m) for m in typing.get_args(inner)]} if _is_union(inner) else value_schema(inner)
        return {**schema, "nullable": True} if nullable else schema
    if origin in (list, tuple, typing.List) or annotation in (list, tuple):
        items = value_schema(args[0]) if args else {}
        return {"type": "array", "items": items}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if inspect.isclass(annotation) and dataclasses.is_dataclass(annotation):
        return _object_schema(annotation)
    if inspect.isclass(annotation):
        if hasattr(annotation, "model_json_schema"):  # a pydantic v2 model
            return _inline_definitions(annotation.model_json_schema())
        if hasattr(annotation, "__fields__") and hasattr(annotation, "schema"):  # a pydantic v1 model
            return _inline_definitions(annotation.schema())
    return {}


def _inline_definitions(schema: dict) -> dict:
    """A pydantic model's JSON schema with its nested models in place of their `$ref`s, so the `Output`
    component stands on its own (pydantic v2 keeps them under `$defs`, v1 under `definitions`)."""
    definitions = {**schema.pop("definitions", {}), **schema.pop("$defs", {})}

    def inline(node: Any, expanding: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [inline(item, expanding) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in definitions:
            name = ref.rsplit("/", 1)[-1]
            if name in expanding:  # a model that contains itself: leave that level open
                return {"title": name, "type": "object"}
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**inline(definitions[name], (*expanding, name)), **inline(rest, expanding)}
        return {key: inline(value, expanding) for key, value in node.items()}

    return inline(schema, ())


def _object_schema(cls: type) -> dict:
    hints = _type_hints(cls)
    properties, required = {}, []
    for f in dataclasses.fields(cls):
        properties[f.name] = {"title": title(f.name), **value_schema(hints.get(f.name, Any))}
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    schema = {"title": cls.__name__, "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


def output_schema(annotation: Any) -> tuple[dict, bool]:
    """(the `Output` component, whether the output is an iterator)."""
    if annotation is inspect.Signature.empty or annotation is Any:
        return {"title": "Output"}, False
    annotation = _strip_annotated(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    item = args[0] if args else Any
    if origin in (ConcatenateIterator, AsyncConcatenateIterator) or annotation in (
            ConcatenateIterator, AsyncConcatenateIterator):
        return {"title": "Output", "type": "array", "items": value_schema(item) or {"type": "string"},
                "x-cog-array-type": "iterator", "x-cog-array-display": "concatenate"}, True
    if origin in _ITERATORS + _ASYNC_ITERATORS or annotation in _ITERATORS + _ASYNC_ITERATORS:
        return {"title": "Output", "type": "array", "items": value_schema(item),
                "x-cog-array-type": "iterator"}, True
    return {**value_schema(annotation), "title": "Output"}, False


def read_signature(fn: Callable[..., Any], setup: Callable[..., Any] | None = None) -> Signature:
    """The full signature of a predict/run callable."""
    hints = _type_hints(fn)
    schema, is_iter = output_schema(hints.get("return", inspect.Signature.empty))
    is_async = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        is_iter = True
        if "x-cog-array-type" not in schema:
            schema = {"title": "Output", "type": "array", "items": {k: v for k, v in schema.items() if k != "title"},
                      "x-cog-array-type": "iterator"}
    takes_weights = setup is not None and "weights" in inspect.signature(setup).parameters
    return Signature(
        inputs=read_inputs(fn), output_schema=schema, is_async=is_async, is_iterator=is_iter,
        streaming=bool(getattr(fn, "__cog_streaming__", False)),
        max_concurrency=getattr(fn, "__cog_concurrent_max__", 1), setup_takes_weights=takes_weights,
    )
