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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError

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


def input_specs(schema: dict[str, Any] | None) -> dict[str, InputSpec] | None:
    """The model's inputs in `x-order`, enums from `allOf` references inlined; None when unknown."""
    if not schema:
        return None
    schemas = schema.get("components", {}).get("schemas", {})
    model = schemas.get("Input")
    if model is None:
        return None
    required = set(model.get("required", []))
    props = sorted(model.get("properties", {}).items(), key=lambda kv: kv[1].get("x-order", 0))
    return {name: InputSpec(name, _inline_refs(prop, schemas), name in required) for name, prop in props}


def _inline_refs(prop: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in prop.items() if k != "allOf"}
    for part in prop.get("allOf", []):
        ref = part.get("$ref", "")
        target = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref.startswith("#/components/schemas/") else part
        merged = {**target, **merged}
    if isinstance(merged.get("items"), dict):
        merged["items"] = _inline_refs(merged["items"], schemas)
    return merged


# -- flags -> input ------------------------------------------------------------------------------
def parse_inputs(flags: list[str], schema: dict[str, Any] | None) -> dict[str, Any]:
    """`-i name=value`, `-i name=@file`, and the seed's `-i @file` for a model with one file input.

    A repeated name makes a list. Without a schema values stay strings and files become data URIs.
    """
    specs = input_specs(schema)
    values: dict[str, list[Any]] = {}
    for flag in flags:
        name, value = _split_flag(flag, specs)
        spec = _spec_for(name, specs)
        values.setdefault(name, []).append(_convert(name, value, spec))
    inputs: dict[str, Any] = {}
    for name, given in values.items():
        spec = specs.get(name) if specs else None
        if spec and not spec.is_list and len(given) > 1:
            raise UsageError(f"input {name!r} takes one value, but -i {name}= was given {len(given)} times")
        inputs[name] = given if (spec and spec.is_list) or len(given) > 1 else given[0]
    if specs:
        missing = [s.name for s in specs.values() if s.required and s.name not in inputs]
        if missing:
            example = " ".join(f"-i {n}=…" for n in missing)
            raise UsageError(f"the model needs input{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(map(repr, missing))}: add {example}")
    return inputs


def check_files(flags: list[str]) -> None:
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
        raise UsageError(f"the model has no input {name!r} (its inputs: {', '.join(specs) or 'none'})")
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
        article = "an" if kind[0] in "aeiou" else "a"
        raise UsageError(f"input {name!r} must be {article} {kind}, not {text!r}") from None
    return text


def _check_constraints(name: str, value: Any, prop: dict[str, Any]) -> None:
    if "enum" in prop and value not in prop["enum"]:
        raise UsageError(f"input {name!r} must be one of {', '.join(map(str, prop['enum']))}, not {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in prop and value < prop["minimum"]:
            raise UsageError(f"input {name!r} must be at least {prop['minimum']}, not {value}")
        if "maximum" in prop and value > prop["maximum"]:
            raise UsageError(f"input {name!r} must be at most {prop['maximum']}, not {value}")
    if isinstance(value, str):
        if "minLength" in prop and len(value) < prop["minLength"]:
            raise UsageError(f"input {name!r} must have at least {prop['minLength']} characters")
        if "maxLength" in prop and len(value) > prop["maxLength"]:
            raise UsageError(f"input {name!r} must have at most {prop['maxLength']} characters")
        if "pattern" in prop and not re.search(prop["pattern"], value):
            raise UsageError(f"input {name!r} must match the pattern {prop['pattern']!r}, not {value!r}")


# -- output -> terminal and files ----------------------------------------------------------------
def write_output(output: Any, out_path: str | None, schema: dict[str, Any] | None = None) -> list[str]:
    """Write file outputs (data URIs) to disk and return what to print: paths, text, or JSON.

    One file goes to `out_path` or `output.<ext>`; a list of files to `<stem>.N.<ext>`; files inside an
    object to `<stem>.<key>.<ext>`, the object printed as JSON with their paths. A string is printed (or
    written to `out_path` when one is given); iterator text marked `concatenate` is joined.
    """
    if out_path and out_path.startswith("@"):  # the seed's spelling: -o @output.png
        out_path = out_path[1:]
    if out_path == "-":
        return _to_stdout(output)
    stem, suffix = _split_suffix(out_path or "output")
    if _is_file(output):
        return [str(_save_data_uri(output, stem, suffix))]
    if isinstance(output, list) and output and all(_is_file(o) for o in output):
        return [str(_save_data_uri(o, f"{stem}.{i}", suffix)) for i, o in enumerate(output)]
    if isinstance(output, list) and is_concatenated_text(schema) and all(isinstance(o, str) for o in output):
        output = "".join(output)
    if isinstance(output, (dict, list)):  # files inside an object: written beside, named by their key
        output = _save_nested_files(output, stem, suffix)
        return [json.dumps(output, indent=2)]
    text = output if isinstance(output, str) else json.dumps(output, indent=2)
    if out_path:
        Path(out_path).write_text(text if text.endswith("\n") else text + "\n")
        return [out_path]
    return [text]


def _to_stdout(output: Any) -> list[str]:
    """`-o -`: a file's bytes (or the text) to stdout, for pipes; a file list cannot be told apart there."""
    if _is_file(output):
        sys.stdout.buffer.write(_decode_data_uri(output)[1])
        sys.stdout.buffer.flush()
        return []
    if isinstance(output, list) and any(_is_file(o) for o in output):
        raise UsageError(f"-o - takes one file, but the output holds {len(output)}; give -o a file name instead")
    return [output if isinstance(output, str) else json.dumps(output, indent=2)]


def _save_nested_files(value: Any, stem: str, suffix: str) -> Any:
    """A copy of `value` where each data URI is written to `<stem>.<key path><suffix or .ext>`."""
    if _is_file(value):
        return str(_save_data_uri(value, stem, suffix))
    if isinstance(value, dict):
        return {k: _save_nested_files(v, f"{stem}.{k}", suffix) for k, v in value.items()}
    if isinstance(value, list):
        return [_save_nested_files(v, f"{stem}.{i}", suffix) for i, v in enumerate(value)]
    return value


def _is_file(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("data:") and "," in value


def is_concatenated_text(schema: dict[str, Any] | None) -> bool:
    """The model yields text meant to be joined (Cog's ConcatenateIterator[str])."""
    out = ((schema or {}).get("components", {}).get("schemas", {}).get("Output") or {})
    return out.get("x-cog-array-display") == "concatenate"


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
