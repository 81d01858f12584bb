"""The OpenAPI document of a predictor, in the layout Cog's clients expect."""

from __future__ import annotations

import copy
from typing import Any

from .server.status import PredictionStatus
from .signature import InputSpec, Signature, title

_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
               "path": "string", "file": "string", "secret": "string"}
STATUSES = [status.value for status in PredictionStatus]
WEBHOOK_EVENTS = ["start", "output", "logs", "completed"]


def _item_schema(spec: InputSpec) -> dict:
    if spec.kind == "union":
        return {"anyOf": [{"type": _JSON_TYPES[m]} for m in spec.members or []]}
    schema: dict[str, Any] = {"type": _JSON_TYPES[spec.kind]}
    if spec.kind in ("path", "file"):
        schema["format"] = "uri"
    elif spec.kind == "secret":
        schema.update({"format": "password", "writeOnly": True, "x-cog-secret": True})
    for key, value in (("minimum", spec.ge), ("maximum", spec.le), ("minLength", spec.min_length),
                       ("maxLength", spec.max_length), ("pattern", spec.regex)):
        if value is not None:
            schema[key] = int(value) if key in ("minimum", "maximum") and spec.kind == "int" else value
    return schema


def _input_property(spec: InputSpec, enums: dict[str, dict]) -> dict:
    prop: dict[str, Any] = {}
    if spec.choices is not None:
        # Cog names an input's enum component after the input and refers to it through allOf.
        enums[spec.name] = {"title": spec.name, "description": "An enumeration.",
                            "enum": list(spec.choices), "type": _JSON_TYPES[spec.kind]}
        prop["allOf"] = [{"$ref": f"#/components/schemas/{spec.name}"}]
    else:
        prop["title"] = title(spec.name)
        item = _item_schema(spec)
        if spec.whole_list_members:  # list[int] | list[float]
            prop["anyOf"] = [{"type": "array", "items": member} for member in item["anyOf"]]
        else:
            prop.update({"type": "array", "items": item} if spec.is_list else item)
    if spec.description is not None:
        prop["description"] = spec.description
    if not spec.required and spec.default is not None:
        # A secret's default must not leak through the schema (which may land in an image label).
        prop["default"] = "**********" if spec.kind == "secret" else spec.default
    if spec.nullable:
        prop["nullable"] = True
    if spec.deprecated:
        prop["deprecated"] = True
    prop["x-order"] = spec.order
    return prop


def input_schema(signature: Signature, name: str = "Input") -> tuple[dict, dict[str, dict]]:
    enums: dict[str, dict] = {}
    properties = {spec.name: _input_property(spec, enums) for spec in signature.inputs}
    schema: dict[str, Any] = {"title": name, "type": "object", "properties": properties}
    required = [spec.name for spec in signature.inputs if spec.required]
    if required:
        schema["required"] = required
    return schema, enums


def _json_response(ref: str, description: str = "Successful Response") -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _operations(resource: str, schema_prefix: str, verb: str, noun: str) -> dict:
    """The create, idempotent-create and cancel operations of /predictions or /trainings."""
    ok_any = {"200": {"description": "Successful Response", "content": {"application/json": {"schema": {}}}}}
    request = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_prefix}Request"}}}}
    answered = {"200": _json_response(f"#/components/schemas/{schema_prefix}Response"),
                "422": _json_response("#/components/schemas/HTTPValidationError", "Validation Error")}
    prefer = {"name": "prefer", "in": "header", "required": False, "schema": {"title": "Prefer", "type": "string"}}
    id_name = f"{resource[:-1]}_id"
    path_id = {"name": id_name, "in": "path", "required": True,
               "schema": {"title": title(id_name).replace(" Id", " ID"), "type": "string"}}
    return {
        f"/{resource}": {"post": {
            "summary": verb.title(), "description": f"Run a single {noun} on the model",
            "operationId": f"{verb}_{resource}_post", "parameters": [prefer],
            "requestBody": request, "responses": answered}},
        f"/{resource}/{{{id_name}}}": {"put": {
            "summary": f"{verb.title()} Idempotent",
            "description": f"Run a single {noun} on the model (idempotent creation).",
            "operationId": f"{verb}_idempotent_{resource}__{id_name}__put",
            "parameters": [path_id, prefer], "requestBody": {**request, "required": True},
            "responses": answered}},
        f"/{resource}/{{{id_name}}}/cancel": {"post": {
            "summary": "Cancel", "description": f"Cancel a running {noun}",
            "operationId": f"cancel_{resource}__{id_name}__cancel_post",
            "parameters": [path_id],
            "responses": {**ok_any, "422": answered["422"]}}},
    }


def _paths(signature: Signature, training: Signature | None) -> dict:
    ok_any = {"200": {"description": "Successful Response", "content": {"application/json": {"schema": {}}}}}
    paths = {
        "/": {"get": {"summary": "Root", "operationId": "root__get", "responses": ok_any}},
        "/health-check": {"get": {"summary": "Healthcheck", "operationId": "healthcheck_health_check_get",
                                  "responses": ok_any}},
        **_operations("predictions", "Prediction", "predict", "prediction"),
        "/shutdown": {"post": {"summary": "Start Shutdown", "operationId": "start_shutdown_shutdown_post",
                               "responses": ok_any}},
    }
    if signature.streaming:  # @cog.streaming: this operation answers `Accept: text/event-stream`
        paths["/predictions"]["post"]["x-cog-streaming"] = True
    if training is not None:
        paths.update(_operations("trainings", "Training", "train", "training"))
    return paths


def _exchange_components(prefix: str, inputs: str, output: str) -> dict:
    """The request and response bodies of predictions (or trainings)."""
    string = {"type": "string"}
    timestamp = {"type": "string", "format": "date-time"}
    return {
        f"{prefix}Request": {"title": f"{prefix}Request", "type": "object", "properties": {
            "id": {"title": "Id", **string},
            "input": {"$ref": f"#/components/schemas/{inputs}"},
            "context": {"title": "Context", "type": "object", "additionalProperties": string},
            "created_at": {"title": "Created At", **timestamp},
            "output_file_prefix": {"title": "Output File Prefix", **string},
            "webhook": {"title": "Webhook", "maxLength": 65536, "minLength": 1, "type": "string", "format": "uri"},
            "webhook_events_filter": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookEvent"},
                                      "default": WEBHOOK_EVENTS}}},
        f"{prefix}Response": {"title": f"{prefix}Response", "type": "object", "properties": {
            "input": {"$ref": f"#/components/schemas/{inputs}"},
            "output": {"$ref": f"#/components/schemas/{output}"},
            "id": {"title": "Id", **string},
            "version": {"title": "Version", **string},
            "created_at": {"title": "Created At", **timestamp},
            "started_at": {"title": "Started At", **timestamp},
            "completed_at": {"title": "Completed At", **timestamp},
            "logs": {"title": "Logs", "type": "string", "default": ""},
            "error": {"title": "Error", **string},
            "status": {"$ref": "#/components/schemas/Status"},
            "metrics": {"title": "Metrics", "type": "object"}}},
    }


def _fixed_components() -> dict:
    return {
        "Status": {"title": "Status", "description": "An enumeration.", "enum": STATUSES, "type": "string"},
        "WebhookEvent": {"title": "WebhookEvent", "description": "An enumeration.", "enum": WEBHOOK_EVENTS,
                         "type": "string"},
        "HTTPValidationError": {"title": "HTTPValidationError", "type": "object", "properties": {
            "detail": {"title": "Detail", "type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}}},
        "ValidationError": {"title": "ValidationError", "required": ["loc", "msg", "type"], "type": "object",
                            "properties": {
                                "loc": {"title": "Location", "type": "array",
                                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                                "msg": {"title": "Message", "type": "string"},
                                "type": {"title": "Error Type", "type": "string"}}},
    }


def openapi_document(signature: Signature, training: Signature | None = None) -> dict:
    """The whole OpenAPI 3.0 document for a predictor with this signature (and its trainer's)."""
    inputs, enums = input_schema(signature)
    schemas = {"Input": inputs, "Output": copy.deepcopy(signature.output_schema),
               **_exchange_components("Prediction", "Input", "Output"), **_fixed_components(), **enums}
    if training is not None:
        training_inputs, training_enums = input_schema(training, "TrainingInput")
        schemas.update({"TrainingInput": training_inputs,
                        "TrainingOutput": {**copy.deepcopy(training.output_schema), "title": "TrainingOutput"},
                        **_exchange_components("Training", "TrainingInput", "TrainingOutput"), **training_enums})
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": _paths(signature, training),
        "components": {"schemas": dict(sorted(schemas.items()))},
    }
