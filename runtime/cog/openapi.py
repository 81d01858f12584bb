"""The OpenAPI document of a predictor, in the layout Cog's clients expect."""

from __future__ import annotations

import copy
from typing import Any

from .signature import InputSpec, Signature, title

_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
               "path": "string", "file": "string", "secret": "string"}
STATUSES = ["starting", "processing", "succeeded", "canceled", "failed"]
WEBHOOK_EVENTS = ["start", "output", "logs", "completed"]


def _item_schema(spec: InputSpec) -> dict:
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


def input_schema(signature: Signature) -> tuple[dict, dict[str, dict]]:
    enums: dict[str, dict] = {}
    properties = {spec.name: _input_property(spec, enums) for spec in signature.inputs}
    schema: dict[str, Any] = {"title": "Input", "type": "object", "properties": properties}
    required = [spec.name for spec in signature.inputs if spec.required]
    if required:
        schema["required"] = required
    return schema, enums


def _json_response(ref: str, description: str = "Successful Response") -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _paths() -> dict:
    ok_any = {"200": {"description": "Successful Response", "content": {"application/json": {"schema": {}}}}}
    request = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionRequest"}}}}
    predicted = {"200": _json_response("#/components/schemas/PredictionResponse"),
                 "422": _json_response("#/components/schemas/HTTPValidationError", "Validation Error")}
    prefer = {"name": "prefer", "in": "header", "required": False, "schema": {"title": "Prefer", "type": "string"}}
    prediction_id = {"name": "prediction_id", "in": "path", "required": True,
                     "schema": {"title": "Prediction ID", "type": "string"}}
    return {
        "/": {"get": {"summary": "Root", "operationId": "root__get", "responses": ok_any}},
        "/health-check": {"get": {"summary": "Healthcheck", "operationId": "healthcheck_health_check_get",
                                  "responses": ok_any}},
        "/predictions": {"post": {
            "summary": "Predict", "description": "Run a single prediction on the model",
            "operationId": "predict_predictions_post", "parameters": [prefer],
            "requestBody": request, "responses": predicted}},
        "/predictions/{prediction_id}": {"put": {
            "summary": "Predict Idempotent", "description": "Run a single prediction on the model (idempotent creation).",
            "operationId": "predict_idempotent_predictions__prediction_id__put",
            "parameters": [prediction_id, prefer], "requestBody": {**request, "required": True},
            "responses": predicted}},
        "/predictions/{prediction_id}/cancel": {"post": {
            "summary": "Cancel", "description": "Cancel a running prediction",
            "operationId": "cancel_predictions__prediction_id__cancel_post",
            "parameters": [prediction_id],
            "responses": {**ok_any, "422": predicted["422"]}}},
        "/shutdown": {"post": {"summary": "Start Shutdown", "operationId": "start_shutdown_shutdown_post",
                               "responses": ok_any}},
    }


def _fixed_components() -> dict:
    string = {"type": "string"}
    timestamp = {"type": "string", "format": "date-time"}
    return {
        "PredictionRequest": {"title": "PredictionRequest", "type": "object", "properties": {
            "id": {"title": "Id", **string},
            "input": {"$ref": "#/components/schemas/Input"},
            "context": {"title": "Context", "type": "object", "additionalProperties": string},
            "created_at": {"title": "Created At", **timestamp},
            "output_file_prefix": {"title": "Output File Prefix", **string},
            "webhook": {"title": "Webhook", "maxLength": 65536, "minLength": 1, "type": "string", "format": "uri"},
            "webhook_events_filter": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookEvent"},
                                      "default": WEBHOOK_EVENTS}}},
        "PredictionResponse": {"title": "PredictionResponse", "type": "object", "properties": {
            "input": {"$ref": "#/components/schemas/Input"},
            "output": {"$ref": "#/components/schemas/Output"},
            "id": {"title": "Id", **string},
            "version": {"title": "Version", **string},
            "created_at": {"title": "Created At", **timestamp},
            "started_at": {"title": "Started At", **timestamp},
            "completed_at": {"title": "Completed At", **timestamp},
            "logs": {"title": "Logs", "type": "string", "default": ""},
            "error": {"title": "Error", **string},
            "status": {"$ref": "#/components/schemas/Status"},
            "metrics": {"title": "Metrics", "type": "object"}}},
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


def openapi_document(signature: Signature) -> dict:
    """The whole OpenAPI 3.0 document for a predictor with this signature."""
    inputs, enums = input_schema(signature)
    schemas = {"Input": inputs, "Output": copy.deepcopy(signature.output_schema), **_fixed_components(), **enums}
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": _paths(),
        "components": {"schemas": dict(sorted(schemas.items()))},
    }
