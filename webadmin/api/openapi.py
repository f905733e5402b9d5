"""The OpenAPI 3.1 document, assembled with apispec from Flask's url_map and each view's
``@operation`` metadata; schemas come from the pydantic models (``$defs`` hoisted into
``components``) and the ``webhooks`` section from the event models the outbox sends.  Nothing is
written by hand next to the code: a route added without ``@operation`` is missing here, which a
test catches.  Served at ``GET /api/v1/openapi.json`` (no data in it, so no token)."""

from __future__ import annotations

import copy
import re
from typing import Any

from apispec import APISpec
from flask import Flask, current_app, jsonify
from pydantic import BaseModel

from astertrack.integrations import webhooks as outbox
from astertrack.integrations.events import DESCRIPTIONS, EVENT_MODELS
from webadmin.api import bp
from webadmin.api.registry import Operation, operation, operation_of
from webadmin.api.schemas import MAX_ID, Error

PREFIX = "/api/v1"
REF = "#/components/schemas/{model}"
SECURITY = "bearerAuth"
TAGS = [
    ("Calls", "Inbound calls and callbacks with their outcome and attribution."),
    ("Leads", "Leads (one customer's enquiries on a site), their enquiries and deals."),
    ("Sessions", "Website visits with utm tags, click ids and analytics ids."),
    ("Chats", "Website chats with their state and attribution, and their messages."),
    ("Settings", "Sources, tracking numbers, pools and managers (read only)."),
    ("Webhooks", "Subscriptions to events, their delivery log and re-sending (tokens of every site)."),
    ("Meta", "This document."),
]
SIGNATURE_HEADERS = [
    (outbox.SIGNATURE_HEADER, "`sha256=` + hex HMAC-SHA256, keyed with the subscription's secret, of "
                              "`<timestamp>.<delivery id>.` followed by the raw body"),
    (outbox.TIMESTAMP_HEADER, "when this attempt was sent, in Unix seconds; refuse one far from now"),
    (outbox.DELIVERY_HEADER, "the delivery id, the same on every retry: de-duplicate by it"),
    ("X-Astertrack-Event", "the event name"),
]
_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


class _Components:
    """pydantic schemas as apispec components, each registered once."""

    def __init__(self, spec: APISpec):
        self.spec, self.names = spec, set()

    def add(self, name: str, schema: dict[str, Any]) -> None:
        if name not in self.names:
            self.names.add(name)
            self.spec.components.schema(name, schema)

    def model(self, model: type[BaseModel], mode: str = "serialization") -> dict[str, str]:
        schema = model.model_json_schema(ref_template=REF, mode=mode)
        for name, sub in schema.pop("$defs", {}).items():
            self.add(name, sub)
        self.add(model.__name__, schema)
        return {"$ref": REF.format(model=model.__name__)}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: an absent parameter is how a query says null."""
    schema = {k: v for k, v in schema.items() if k not in ("title", "description")}
    if schema.get("default", 0) is None:
        del schema["default"]
    options = schema.get("anyOf")
    if options and any(option == {"type": "null"} for option in options):
        rest = [option for option in options if option != {"type": "null"}]
        del schema["anyOf"]
        schema.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF, mode="validation")
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema["properties"].items():
        parameter = {"name": name, "in": "query", "required": name in required, "schema": _without_null(prop)}
        if prop.get("description"):
            parameter["description"] = prop["description"]
        out.append(parameter)
    return out


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    parameters = []

    def replace(match: re.Match) -> str:
        converter, name = match.group(1) or "string", match.group(2)
        schema = ({"type": "integer", "minimum": 1, "maximum": MAX_ID} if converter == "int"
                  else {"type": "string"})
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema, "example": 1})
        return "{" + name + "}"

    return _ARGUMENT.sub(replace, rule), parameters


def _operation(components: _Components, endpoint: str, meta: Operation, path_parameters: list) -> dict[str, Any]:
    codes = meta.error_codes(path_ids=bool(path_parameters))
    answer: dict[str, Any] = {"description": "OK" if meta.status == 200 else "Created"}
    answer["content"] = {"application/json": {"schema": components.model(meta.response) if meta.response
                                              else {"type": "object"}}}
    responses: dict[str, Any] = {str(meta.status): answer}
    error_ref = components.model(Error)
    for status, names in codes.items():
        responses[str(status)] = {"description": "error codes: " + ", ".join(f"`{n}`" for n in names),
                                  "content": {"application/json": {"schema": error_ref}}}
    out: dict[str, Any] = {
        "operationId": endpoint.removeprefix("api."), "tags": [meta.tag], "summary": meta.summary,
        "responses": responses, "x-error-codes": {str(status): names for status, names in codes.items()},
    }
    if meta.description:
        out["description"] = meta.description
    parameters = list(path_parameters)
    if meta.query is not None:
        parameters += _query_parameters(meta.query)
    if parameters:
        out["parameters"] = parameters
    if meta.body is not None:
        media: dict[str, Any] = {"schema": components.model(meta.body, mode="validation")}
        examples = (meta.body.model_config.get("json_schema_extra") or {}).get("examples")
        if examples:
            media["examples"] = {f"example{n}": {"value": value} for n, value in enumerate(examples, 1)}
        out["requestBody"] = {"required": True, "content": {"application/json": media}}
    if meta.scope is None:
        out["security"] = []
    else:
        out["security"] = [{SECURITY: []}]
        out["x-scope"] = meta.scope
        out["x-all-sites"] = meta.all_sites
    return out


def _webhooks(components: _Components) -> dict[str, Any]:
    out = {}
    for event, model in EVENT_MODELS.items():
        headers = [{"name": name, "in": "header", "required": True, "description": text,
                    "schema": {"type": "string"}} for name, text in SIGNATURE_HEADERS]
        out[event] = {"post": {
            "operationId": "webhook_" + event.replace(".", "_"), "summary": f"{event}",
            "description": f"{DESCRIPTIONS[event]} Sent to each subscription to `{event}`, at least once, signed.",
            "parameters": headers,
            "requestBody": {"required": True, "content": {"application/json": {"schema": components.model(model)}}},
            "responses": {"2XX": {"description": "received; any other answer is retried with back-off"}},
        }}
    return out


def build(app: Flask) -> dict[str, Any]:
    spec = APISpec(title="astertrack API", version="1", openapi_version="3.1.0",
                   info={"description": "Calls, leads, visits and settings of astertrack as JSON, and webhook "
                                        "subscriptions. Send `Authorization: Bearer <token>` (tokens: Settings → "
                                        "API tokens). Lists are paged by cursor, newest first."},
                   tags=[{"name": name, "description": text} for name, text in TAGS])
    spec.components.security_scheme(SECURITY, {"type": "http", "scheme": "bearer",
                                               "description": "an API token made in Settings → API tokens"})
    components = _Components(spec)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(PREFIX + "/"):
            continue
        meta = operation_of(app.view_functions[rule.endpoint])
        if meta is None:
            continue  # undocumented: tests/webadmin/test_rest_api.py fails on it
        path, path_parameters = _path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(components, rule.endpoint, meta, path_parameters)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    document["webhooks"] = _webhooks(components)
    document["components"] = spec.to_dict()["components"]  # the webhooks' bodies too
    return document


def document(app: Flask) -> dict[str, Any]:
    """The document of ``app``, built once per app (the routes do not change while it runs)."""
    cached = app.extensions.get("astertrack_openapi")
    if cached is None:
        cached = app.extensions["astertrack_openapi"] = build(app)
    return copy.deepcopy(cached)


@bp.get("/openapi.json")
@operation("Meta", "This OpenAPI 3.1 document", response=None, scope=None)
def openapi_json():
    return jsonify(document(current_app._get_current_object()))
