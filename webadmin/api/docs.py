"""The API's browsable page, rendered on the server from the served OpenAPI document (so it
cannot drift from it): operations by tag with parameters, bodies, error codes, scope and a curl
example, and the webhooks with their bodies.  Behind login, for admins and supervisors; no
script, nothing from a CDN."""

from __future__ import annotations

import json
import shlex
from typing import Any

from flask import current_app, render_template, request
from flask_babel import lazy_gettext as _l

from webadmin.api import tokens_bp
from webadmin.api.openapi import PREFIX, TAGS, document
from webadmin.security import roles_required

MAX_DEPTH = 4
METHODS = ("get", "post", "put", "patch", "delete")
TAG_TITLES = {"Calls": _l("Calls"), "Leads": _l("Leads"), "Sessions": _l("Visits"), "Chats": _l("Website chats"), "Settings": _l("Settings"),
              "Webhooks": _l("Webhooks"), "Meta": _l("This document")}


def _type(schema: dict[str, Any]) -> str:
    """A schema's type in a few characters: ``string (date-time)``, ``integer | null``, ``call.finished | ...``."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return str(kind)


def _object_of(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema ``schema`` is, or holds (through a $ref, a nullable or an array)."""
    if "$ref" in schema:
        return _object_of(components.get(schema["$ref"].rsplit("/", 1)[-1], {}), components)
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            found = _object_of(option, components)
            if found is not None:
                return found
    if schema.get("type") == "array":
        return _object_of(schema.get("items", {}), components)
    return schema if "properties" in schema else None


def fields(schema: dict[str, Any], components: dict[str, Any], prefix: str = "", depth: int = 0) -> list[dict]:
    """The rows of a body's table: dotted name, type, required, description, nested objects expanded."""
    target = _object_of(schema, components)
    if target is None or depth > MAX_DEPTH:
        return []
    required = set(target.get("required", []))
    rows = []
    for name, prop in target.get("properties", {}).items():
        label = prefix + name
        description = prop.get("description") or ""
        if "$ref" in prop and not description:
            description = components.get(prop["$ref"].rsplit("/", 1)[-1], {}).get("description", "")
        rows.append({"name": label, "type": _type(prop), "required": name in required, "description": description})
        nested = _object_of(prop, components)
        if nested is not None:
            suffix = "[]." if (prop.get("type") == "array" or any(o.get("type") == "array" for o in prop.get("anyOf", []))) else "."
            rows += fields(prop, components, label + suffix, depth + 1)
    return rows


def _example(media: dict[str, Any]) -> Any:
    examples = media.get("examples") or {}
    return next(iter(examples.values()))["value"] if examples else None


def curl(method: str, path: str, operation: dict[str, Any], base: str) -> str:
    """A curl command that works as printed once $TOKEN is set."""
    url = base.rstrip("/") + _fill(path)
    if method == "get" and any(p["in"] == "query" and p["name"] == "limit" for p in operation.get("parameters", [])):
        url += "?limit=10"
    first = "curl -sS" + ("" if method == "get" else f" -X {method.upper()}")
    lines = [first]
    if operation.get("security"):
        lines.append('-H "Authorization: Bearer $TOKEN"')
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        lines.append("-H 'Content-Type: application/json'")
        lines.append("-d " + shlex.quote(json.dumps(_example(body) or {}, ensure_ascii=False)))
    lines.append(shlex.quote(url))
    return " \\\n  ".join(lines)


def _fill(path: str) -> str:
    """The path with 1 for every id, as in the examples."""
    out, rest = "", path
    while "{" in rest:
        head, _, tail = rest.partition("{")
        _name, _, rest = tail.partition("}")
        out += head + "1"
    return out + rest


def reference(doc: dict[str, Any], base: str) -> dict[str, Any]:
    """The page's view of the document: tags with their operations, and the webhooks."""
    components = doc.get("components", {}).get("schemas", {})
    by_tag: dict[str, list[dict]] = {name: [] for name, _text in TAGS}
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            answers = []
            for status, answer in operation.get("responses", {}).items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                answers.append({"status": status, "codes": operation.get("x-error-codes", {}).get(status, []),
                                "type": _type(schema) if schema else "", "rows": fields(schema, components)
                                if status.startswith("2") else []})
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            by_tag.setdefault(operation["tags"][0], []).append({
                "id": operation["operationId"], "method": method.upper(), "path": path,
                "summary": operation.get("summary", ""), "description": operation.get("description", ""),
                "parameters": [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                                "type": _type(p.get("schema", {})), "description": p.get("description", "")}
                               for p in operation.get("parameters", [])],
                "body": fields(body["schema"], components) if body else None,
                "body_type": _type(body["schema"]) if body else "",
                "example": json.dumps(_example(body), ensure_ascii=False, indent=2) if body and _example(body) else "",
                "answers": answers, "scope": operation.get("x-scope"), "all_sites": operation.get("x-all-sites", False),
                "curl": curl(method, path, operation, base),
            })
    hooks = []
    for event, item in doc.get("webhooks", {}).items():
        post = item["post"]
        schema = post["requestBody"]["content"]["application/json"]["schema"]
        hooks.append({"event": event, "id": post["operationId"], "description": post.get("description", ""),
                      "headers": post.get("parameters", []), "type": _type(schema),
                      "rows": fields(schema, components)})
    return {"tags": [(name, TAG_TITLES.get(name, name), ops) for name, ops in by_tag.items() if ops], "hooks": hooks}


@tokens_bp.get("/docs")
@roles_required("admin", "supervisor")
def docs():
    doc = document(current_app._get_current_object())
    base = request.url_root.rstrip("/")
    return render_template("api/docs.html", doc=doc, ref=reference(doc, base), base=base,
                           document_url=base + PREFIX + "/openapi.json")
