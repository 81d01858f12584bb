"""Check a request's `input` against the predictor's signature, at the edge.

Errors follow pydantic's layout, as Cog's clients expect:
{"loc": ["body", "input", name], "msg": ..., "type": ...}.
"""

from __future__ import annotations

from typing import Any

from ..signature import InputSpec, Signature, fits_kind, value_problem
from .files import file_url_problem


def error(name: str | None, msg: str, kind: str) -> dict[str, Any]:
    loc = ["body", "input"] + ([name] if name is not None else [])
    return {"loc": loc, "msg": msg, "type": kind}


def _check_one(spec: InputSpec, value: Any) -> tuple[str, str] | None:
    problem = value_problem(spec, value)
    if problem is None and spec.is_file and (why := file_url_problem(value)):
        return "value_error.url.scheme", why
    return problem


def _check(spec: InputSpec, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None if spec.nullable else error(spec.name, "none is not an allowed value", "type_error.none.not_allowed")
    if spec.is_list:
        if not isinstance(value, list):
            return error(spec.name, "value is not a valid list", "type_error.list")
        if spec.whole_list_members and not any(all(fits_kind(m, v) for v in value) for m in spec.members or []):
            wanted = " | ".join(f"list[{m}]" for m in spec.members or [])
            return error(spec.name, f"value is not a valid {wanted}", "type_error.union")
        for index, item in enumerate(value):
            if problem := _check_one(spec, item):
                return {"loc": ["body", "input", spec.name, index], "msg": problem[1], "type": problem[0]}
        return None
    if problem := _check_one(spec, value):
        return error(spec.name, problem[1], problem[0])
    return None


def _normalize(spec: InputSpec, value: Any) -> Any:
    """Integral floats for int inputs become ints (after validation accepted them)."""
    if spec.kind != "int":
        return value
    if isinstance(value, list):
        return [int(v) if isinstance(v, float) else v for v in value]
    return int(value) if isinstance(value, float) else value


def validate_input(signature: Signature, given: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(complete input with defaults filled in, errors). No errors means the input is usable."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        return {}, [error(None, "value is not a valid dict", "type_error.dict")]
    errors, values = [], {}
    known = {spec.name for spec in signature.inputs}
    for name in given:
        if name not in known:
            errors.append(error(name, "extra fields not permitted", "value_error.extra"))
    for spec in signature.inputs:
        if spec.name in given:
            if (problem := _check(spec, given[spec.name])) is not None:
                errors.append(problem)
            else:
                values[spec.name] = _normalize(spec, given[spec.name])
        elif spec.required:
            errors.append(error(spec.name, "field required", "value_error.missing"))
        else:
            values[spec.name] = spec.default
    return values, errors


def coerce_form_value(spec: InputSpec, text: str) -> Any:
    """A multipart form field (always text) as the input's type; unchanged when it does not parse,
    so validation reports it."""
    try:
        if spec.kind == "int":
            return int(text)
        if spec.kind == "float":
            return float(text)
        if spec.kind == "bool":
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
    except ValueError:
        pass
    return text
