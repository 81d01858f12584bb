"""Inputs from `-i name=value` flags and outputs to the terminal or files, guided by the model's schema."""

from __future__ import annotations

import base64
import json
import mimetypes
from pathlib import Path
from typing import Any

from .errors import UsageError


def _coerce(name: str, text: str, prop: dict[str, Any]) -> Any:
    kind = prop.get("type")
    if prop.get("format") == "uri" or kind is None and "allOf" not in prop:
        return text
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if kind in ("array", "object"):
            return json.loads(text)
    except ValueError:
        raise UsageError(f"input {name!r} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not {text!r}") from None
    return text


def file_to_data_uri(name: str, path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"input {name!r} names {path}, which is not a file")
    mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(file.read_bytes()).decode()}"


def parse_inputs(flags: list[str], schema: dict[str, Any] | None) -> dict[str, Any]:
    """-i name=value, -i name=@file, and the seed's -i @file for a model with one file input."""
    props: dict[str, Any] = ((schema or {}).get("components", {}).get("schemas", {})
                             .get("Input", {}).get("properties", {}))
    inputs: dict[str, Any] = {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        if not sep:
            if not flag.startswith("@"):
                raise UsageError(f"input {flag!r} must look like name=value or name=@file")
            files = [n for n, p in props.items() if p.get("format") == "uri"]
            if len(files) != 1:
                raise UsageError(f"-i {flag} needs a name: the model has {len(files)} file inputs")
            name, value = files[0], flag
        if props and name not in props:
            raise UsageError(f"the model has no input {name!r} (inputs: {', '.join(props) or 'none'})")
        item = props.get(name, {})
        item_schema = item.get("items", item) if item.get("type") == "array" else item
        coerced = file_to_data_uri(name, value[1:]) if value.startswith("@") else _coerce(name, value, item_schema)
        if name in inputs or item.get("type") == "array":
            previous = inputs.get(name, [])
            inputs[name] = (previous if isinstance(previous, list) else [previous]) + [coerced]
        else:
            inputs[name] = coerced
    return inputs


def write_output(output: Any, out_path: str | None) -> list[str]:
    """Files (data URIs) go to disk; other values are returned as lines to print."""
    if isinstance(output, str) and output.startswith("data:"):
        return [str(_save_data_uri(output, out_path or "output"))]
    if isinstance(output, list) and output and all(isinstance(o, str) and o.startswith("data:") for o in output):
        stem = out_path or "output"
        return [str(_save_data_uri(o, f"{stem}.{i}")) for i, o in enumerate(output)]
    if isinstance(output, str):
        return [output]
    return [json.dumps(output, indent=2)]


def _save_data_uri(uri: str, path: str) -> Path:
    header, _, payload = uri.partition(",")
    mime = header[5:].split(";")[0]
    target = Path(path)
    if not target.suffix:
        target = target.with_suffix(mimetypes.guess_extension(mime) or ".bin")
    target.write_bytes(base64.b64decode(payload) if ";base64" in header else payload.encode())
    return target
