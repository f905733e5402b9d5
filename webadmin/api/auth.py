"""The API's side of a request: the bearer token (401 without a live one), the JSON body (size
capped, 413 beyond it), and errors as JSON with a machine-readable code."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from flask import g, jsonify, request
from werkzeug.exceptions import HTTPException

from astertrack.db.engine import begin_write
from astertrack.db.models import ApiToken
from astertrack.integrations import api_tokens
from webadmin.api import bp
from webadmin.db import get_session

MAX_BODY = 16 * 1024  # bytes: a lead update is a few hundred


class ApiError(Exception):
    """An answer other than 200: HTTP status, a stable code for programs, a message for people."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None):
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    response = jsonify({"error": error})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="astertrack"'
    return response


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    get_session().rollback()
    return error_response(error.status, error.code, error.message, error.details)


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    """Werkzeug's own refusals (405, 404 of a converter, 413) in the API's JSON shape."""
    code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 500: "server_error"}.get(error.code, "http_error")
    return error_response(error.code or 500, code, error.description or error.name)


# Flask looks a status code's handlers up before the class-based ones, app and blueprint alike: the
# app's HTML pages for these codes would win over the handler above without these registrations.
for _status in (400, 403, 404, 405, 413, 429, 500):
    bp.register_error_handler(_status, _http_error)


def token_required(write: bool) -> Callable:
    """The view runs with ``g.api_token`` (a live token; 401 otherwise) in a write transaction, and
    the token's ``last_used_at`` is committed with it.  ``write``: the view changes data, so a
    read-only token gets 403 — checked here, before anything is read."""

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            db = get_session()
            db.commit()
            begin_write(db)  # SQLite: the write lock first (last_used_at, the lead), so nothing waits mid-way
            token = api_tokens.authenticate(db, api_tokens.bearer(request.headers.get("Authorization")))
            if token is None:
                db.rollback()
                raise ApiError(401, "unauthorized", "a valid API token is required: Authorization: Bearer <token>")
            if write and token.scope != "write":
                db.commit()  # last_used_at: the token was used, if only to be refused
                raise ApiError(403, api_tokens.READ_ONLY, "this token may only read")
            g.api_token = token
            response = view(*args, **kwargs)
            db.commit()
            return response

        wrapped.token_scope = "write" if write else "read"
        return wrapped

    return decorator


def current_token() -> ApiToken:
    return g.api_token


def json_body() -> dict[str, Any]:
    """The request's JSON object; 413 past ``MAX_BODY`` (read no further), 400 for anything else."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "body_too_large", f"the body is limited to {MAX_BODY} bytes")
    raw = request.stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "body_too_large", f"the body is limited to {MAX_BODY} bytes")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_json", "the body must be a JSON object in UTF-8") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body
