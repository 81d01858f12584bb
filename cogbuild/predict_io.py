"""From `-i` flags to a prediction's input, and from its output to the terminal or files.

Inputs are checked against the model's OpenAPI schema (Cog's layout: `components.schemas.Input`) before
any model starts, so a typo costs a second, not a model setup. Every problem is one sentence naming the
input at fault. Files travel as data URIs; file outputs come back as data URIs and are written to disk.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import re
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import CogUsageError, UsageError

URL_PREFIXES = ("http://", "https://", "data:")


# -- the schema, as far as flags care ----------------------------------------------------------
@dataclass
class InputSpec:
    """One input of the model: its JSON type and the constraints the CLI can check up front."""

    name: str
    prop: dict[str, Any]
    required: bool

    @property
    def is_list(self) -> bool:
        return self.prop.get("type") == "array"

    @property
    def item(self) -> dict[str, Any]:
        return self.prop.get("items", {}) if self.is_list else self.prop

    @property
    def is_file(self) -> bool:
        return self.item.get("format") == "uri"

    @property
    def kind(self) -> str | None:
        return self.item.get("type")


def input_specs(schema: dict[str, Any] | None, component: str = "Input") -> dict[str, InputSpec] | None:
    """The model's inputs (`Input`, or `TrainingInput` for training) in `x-order`, enums from `allOf`
    references inlined; None when unknown."""
    if not schema:
        return None
    schemas = schema.get("components", {}).get("schemas", {})
    model = schemas.get(component)
    if model is None:
        return None
    required = set(model.get("required", []))
    props = sorted(model.get("properties", {}).items(), key=lambda kv: kv[1].get("x-order", 0))
    return {name: InputSpec(name, inline_refs(prop, schemas), name in required) for name, prop in props}


def inline_refs(prop: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """`prop` with the schemas its `allOf` references name merged in (its own keys win), items too. A
    referenced schema's description describes its type (pydantic's "An enumeration."), so it is left out."""
    merged = {k: v for k, v in prop.items() if k != "allOf"}
    for part in prop.get("allOf", []):
        ref = part.get("$ref", "")
        target = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref.startswith("#/components/schemas/") else part
        merged = {**{k: v for k, v in target.items() if k != "description"}, **merged}
    if isinstance(merged.get("items"), dict):
        merged["items"] = inline_refs(merged["items"], schemas)
    return merged


# -- flags -> input ------------------------------------------------------------------------------
# Problems are worded as Cog words them (`unknown input "x"; valid inputs are: …`, `missing required input
# "x"`, `invalid input "x": …`), so scripts and habits written for `cog predict` carry over.
def parse_inputs(flags: list[str], schema: dict[str, Any] | None, component: str = "Input") -> dict[str, Any]:
    """`-i name=value`, `-i name=@file`, and the seed's `-i @file` for a model with one file input.

    A repeated name makes a list. Without a schema values stay strings and files become data URIs.
    """
    specs = input_specs(schema, component)
    values: dict[str, list[Any]] = {}
    for flag in flags:
        name, value = _split_flag(flag, specs)
        spec = _spec_for(name, specs)
        values.setdefault(name, []).append(_convert(name, value, spec))
    inputs: dict[str, Any] = {}
    for name, given in values.items():
        spec = specs.get(name) if specs else None
        if spec and not spec.is_list and len(given) > 1:
            raise UsageError(f'invalid input "{name}": takes one value, but -i {name}= was given '
                             f"{len(given)} times")
        inputs[name] = given if (spec and spec.is_list) or len(given) > 1 else given[0]
    _check_required(inputs, specs)
    return inputs


def parse_json_inputs(text: str, schema: dict[str, Any] | None, stdin=None, component: str = "Input") -> dict[str, Any]:
    """Cog's `--json`: an object given inline, `@file.json`, or `@-` / `-` for stdin. String values that
    start with `@` name files (sent as data URIs). Checked against the schema like `-i` values."""
    source = "stdin" if text in ("-", "@-") else text[1:] if text.startswith("@") else None
    if source == "stdin":
        text = (stdin or sys.stdin).read()
    elif source is not None:
        try:
            text = Path(source).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CogUsageError(f"Failed to read JSON from file {source!r}: {exc.__class__.__name__}") from None
    try:
        given = json.loads(text)
    except ValueError as exc:
        raise CogUsageError(f"Failed to parse JSON{' from ' + source if source else ''}: {exc}") from None
    if not isinstance(given, dict):
        raise UsageError("--json must be a JSON object of inputs, like '{\"prompt\": \"hi\"}'")
    return check_json_inputs(given, schema, component)


def check_json_inputs(given: dict[str, Any], schema: dict[str, Any] | None, component: str = "Input") -> dict[str, Any]:
    """A JSON object of inputs checked against the schema; string values that start with `@` name files
    (read into data URIs)."""
    specs = input_specs(schema, component)
    inputs: dict[str, Any] = {}
    for name, value in given.items():
        spec = _spec_for(name, specs)
        if isinstance(value, str) and value.startswith("@"):
            value = file_to_data_uri(name, value[1:])
        elif spec is not None:
            _check_json_value(name, value, spec)
        inputs[name] = value
    _check_required(inputs, specs)
    return inputs


def _check_required(inputs: dict[str, Any], specs: dict[str, InputSpec] | None) -> None:
    for spec in (specs or {}).values():
        if spec.required and spec.name not in inputs:
            raise UsageError(f'missing required input "{spec.name}"')


_JSON_TYPES = {"integer": (int,), "number": (int, float), "boolean": (bool,), "string": (str,), "array": (list,),
               "object": (dict,)}


def _json_kind(value: Any) -> str:
    for kind, types in (("boolean", (bool,)), ("integer", (int,)), ("number", (float,)), ("string", (str,)),
                        ("array", (list,)), ("object", (dict,))):
        if isinstance(value, types):
            return kind
    return "null"


def _check_json_value(name: str, value: Any, spec: InputSpec) -> None:
    if value is None:
        raise UsageError(f'invalid input "{name}": must not be null (omit the input to use its default)')
    items = value if spec.is_list and isinstance(value, list) else [value]
    for item, prop in ((v, spec.item) for v in items):
        kind = prop.get("type")
        if spec.is_file:
            kind = "string"
        wrong = kind in _JSON_TYPES and (not isinstance(item, _JSON_TYPES[kind])
                                         or isinstance(item, bool) and kind != "boolean")
        if wrong:
            raise UsageError(f'invalid input "{name}": expected {kind}, got {_json_kind(item)}')
        _check_constraints(name, item, prop)


def check_files(flags: Sequence[str]) -> None:
    """Before the schema is known: every `@file` named must exist, so nothing starts for nothing."""
    for flag in flags:
        value = flag.partition("=")[2] if "=" in flag else flag
        if value.startswith("@") and not Path(value[1:]).is_file():
            name = flag.partition("=")[0] if "=" in flag else "input"
            raise UsageError(f"input {name!r} names {value[1:]}, which is not a file")


def _split_flag(flag: str, specs: dict[str, InputSpec] | None) -> tuple[str, str]:
    name, sep, value = flag.partition("=")
    if sep and name and not name.startswith("@"):
        return name, value
    if not flag.startswith("@"):
        raise UsageError(f"input {flag!r} must look like name=value or name=@file")
    if specs is None:
        raise UsageError(f"-i {flag} needs a name (name=@file): the model's schema is unknown")
    files = [s.name for s in specs.values() if s.is_file]
    if len(files) != 1:
        raise UsageError(f"-i {flag} needs a name (name=@file): the model has {len(files)} file inputs"
                         + (f" ({', '.join(files)})" if files else ""))
    return files[0], flag


def _spec_for(name: str, specs: dict[str, InputSpec] | None) -> InputSpec | None:
    if specs is None:
        return None
    if name not in specs:
        valid = f"valid inputs are: {', '.join(sorted(specs))}" if specs else "model does not accept inputs"
        raise UsageError(f'unknown input "{name}"; {valid}')
    return specs[name]


def _convert(name: str, text: str, spec: InputSpec | None) -> Any:
    if spec is None:
        return file_to_data_uri(name, text[1:]) if text.startswith("@") else text
    if spec.is_file:
        return _file_value(name, text)
    if text.startswith("@"):  # like curl -d @file: a non-file input takes the file's text
        text = _read_text(name, text[1:])
    value = _coerce(name, text, spec.item)
    _check_constraints(name, value, spec.item)
    return value


def _file_value(name: str, text: str) -> str:
    if text.startswith("@"):
        return file_to_data_uri(name, text[1:])
    if text.startswith(URL_PREFIXES):
        return text
    if Path(text).is_file():
        return file_to_data_uri(name, text)
    raise UsageError(f"input {name!r} is a file: give {name}=@PATH or a URL (no file {text!r} exists)")


def file_to_data_uri(name: str, path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"input {name!r} names {path}, which is not a file")
    mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(file.read_bytes()).decode()}"


def _read_text(name: str, path: str) -> str:
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"input {name!r} names {path}, which cannot be read as text ({exc.__class__.__name__})") from None


_TRUE, _FALSE = ("true", "1", "yes", "y", "on"), ("false", "0", "no", "n", "off")


def _coerce(name: str, text: str, prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean":
            if text.lower() not in _TRUE + _FALSE:
                raise ValueError
            return text.lower() in _TRUE
        if kind in ("array", "object"):
            return json.loads(text)
    except ValueError:
        raise UsageError(f'invalid input "{name}": expected {kind}, got string {text!r}') from None
    return text


def _check_constraints(name: str, value: Any, prop: dict[str, Any]) -> None:
    def fail(reason: str) -> UsageError:
        return UsageError(f'invalid input "{name}": {reason}')

    if "enum" in prop and value not in prop["enum"]:
        raise fail(f"must be one of: {', '.join(map(str, prop['enum']))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in prop and value < prop["minimum"]:
            raise fail(f"number must be at least {prop['minimum']}, not {value}")
        if "maximum" in prop and value > prop["maximum"]:
            raise fail(f"number must be at most {prop['maximum']}, not {value}")
    if isinstance(value, str):
        if "minLength" in prop and len(value) < prop["minLength"]:
            raise fail(f"minimum string length is {prop['minLength']}")
        if "maxLength" in prop and len(value) > prop["maxLength"]:
            raise fail(f"maximum string length is {prop['maxLength']}")
        if "pattern" in prop and not re.search(prop["pattern"], value):
            raise fail(f"string doesn't match the regular expression \"{prop['pattern']}\"")


# -- output -> terminal and files ----------------------------------------------------------------
@dataclass
class Rendered:
    """What a finished prediction shows: text for stdout (None: nothing) and the files written, which the
    CLI reports one per line as Cog does (`Written output to: PATH`)."""

    text: str | None = None
    written: list[str] = field(default_factory=list)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def write_output(output: Any, out_path: str | None, schema: dict[str, Any] | None = None) -> Rendered:
    """Write file outputs (data URIs) to disk, and say what to print: text, or JSON for everything else.

    One file goes to `out_path` or `output.<ext>`; a list of files to `<stem>.N.<ext>`; files inside an
    object to `<stem>.<key>.<ext>`, the object printed as JSON with their paths. With `out_path`, text and
    JSON go to that file instead of stdout. Iterator outputs print as the JSON array of their chunks.
    """
    if out_path and out_path.startswith("@"):  # the seed's spelling: -o @output.png
        out_path = out_path[1:]
    if out_path == "-":
        return _to_stdout(output)
    stem, suffix = _split_suffix(out_path or "output")
    written: list[str] = []
    output = _save_files(output, stem, suffix, written)
    if written and (isinstance(output, str) or isinstance(output, list) and all(p in written for p in output)):
        return Rendered(written=written)  # only files: their paths are the report
    text = output if isinstance(output, str) else pretty_json(output)
    if out_path:
        Path(out_path).write_text(text if text.endswith("\n") else text + "\n")
        return Rendered(written=written + [out_path])
    return Rendered(text=text, written=written)


def write_prediction(body: dict[str, Any], out_path: str | None) -> Rendered:
    """`--json`: the whole prediction as JSON, its output files written beside (named after `out_path`
    without its extension) and replaced by their paths; with `out_path`, the JSON goes to that file."""
    written: list[str] = []
    if body.get("status") == "succeeded":
        stem = _split_suffix(out_path.removeprefix("@"))[0] if out_path else "output"
        body = {**body, "output": _save_files(body.get("output"), stem, "", written)}
    text = pretty_json(body)
    if out_path:
        Path(out_path.removeprefix("@")).write_text(text + "\n")
        return Rendered(written=written + [out_path.removeprefix("@")])
    return Rendered(text=text, written=written)


def _to_stdout(output: Any) -> Rendered:
    """`-o -`: a file's bytes (or the text) to stdout, for pipes; a file list cannot be told apart there."""
    if _is_file(output):
        sys.stdout.buffer.write(_decode_data_uri(output)[1])
        sys.stdout.buffer.flush()
        return Rendered()
    if isinstance(output, list) and any(_is_file(o) for o in output):
        raise UsageError(f"-o - takes one file, but the output holds {len(output)}; give -o a file name instead")
    return Rendered(text=output if isinstance(output, str) else pretty_json(output))


def _save_files(value: Any, stem: str, suffix: str, written: list[str]) -> Any:
    """A copy of `value` where each data URI is written to `<stem>[.<key path>]<suffix or .ext>`, in `written`."""
    if _is_file(value):
        path = str(_save_data_uri(value, stem, suffix))
        written.append(path)
        return path
    if isinstance(value, dict):
        return {k: _save_files(v, f"{stem}.{_name_part(k)}", suffix, written) for k, v in value.items()}
    if isinstance(value, list):
        return [_save_files(v, f"{stem}.{i}", suffix, written) for i, v in enumerate(value)]
    return value


def _name_part(key: object) -> str:
    """An output object's key as one piece of a file name: the model chose it, so it must not name a path."""
    part = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(key)).strip(".")
    return part or "_"


def _is_file(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("data:") and "," in value


def yields_chunks(schema: dict[str, Any] | None) -> bool:
    """The model's output is an iterator of values (not files), which can be printed as they come."""
    out = ((schema or {}).get("components", {}).get("schemas", {}).get("Output") or {})
    return out.get("x-cog-array-type") == "iterator" and out.get("items", {}).get("format") != "uri"


def _split_suffix(path: str) -> tuple[str, str]:
    p = Path(path)
    return (str(p.with_suffix("")), p.suffix) if p.suffix else (path, "")


def _save_data_uri(uri: str, stem: str, suffix: str) -> Path:
    """Write the file to `stem + suffix`; with no suffix given, the extension follows the MIME type."""
    mime, data = _decode_data_uri(uri)
    target = Path(stem + (suffix or _extension(mime)))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def _decode_data_uri(uri: str) -> tuple[str, bytes]:
    header, _, payload = uri.partition(",")
    data = base64.b64decode(payload) if ";base64" in header else urllib.parse.unquote_to_bytes(payload)
    return header[5:].split(";")[0], data


def _extension(mime: str) -> str:
    preferred = {"image/jpeg": ".jpg", "text/plain": ".txt", "audio/mpeg": ".mp3"}
    return preferred.get(mime) or mimetypes.guess_extension(mime) or ".bin"
