"""``@operation``: one decorator per API view that records what the OpenAPI document says about it
(query, body and answer models, scope, error codes) and does what it says: the token check, the
query and body validated by the same pydantic models, the answer serialised from its model.
Also the pieces every list shares: the token's site limit and keyset (cursor) pagination.

    @bp.get("/calls")
    @operation("Calls", "List calls", query=CallsQuery, response=CallList)
    def calls(query: CallsQuery): ...
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import current_app, request
from pydantic import BaseModel, ValidationError
from sqlalchemy import Select
from sqlalchemy.orm import Session

from astertrack.integrations import api_tokens
from webadmin.api.auth import ApiError, current_token, json_body, token_required
from webadmin.api.schemas import MAX_ID, Page

INVALID = "invalid_parameter"
INVALID_CURSOR = "invalid_cursor"
WRONG_SITE_MESSAGE = "this token is limited to another site"
ALL_SITES_MESSAGE = "this operation needs a token of every site"


@dataclass(frozen=True)
class Operation:
    """What the document says about one view (read by ``openapi.py``)."""

    tag: str
    summary: str
    response: type[BaseModel] | None  # None: a free-form JSON object (the document itself)
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    scope: str | None = "read"  # read, write; None: no token needed
    all_sites: bool = False  # only a token of every site may call it
    status: int = 200
    errors: tuple[tuple[int, str], ...] = ()  # beyond those the kind of operation implies
    field_codes: bool = False  # a bad body field answers invalid_<field>, not invalid_parameter
    description: str = ""

    def error_codes(self, path_ids: bool) -> dict[int, list[str]]:
        """Every status other than success, with the codes it may carry."""
        out: dict[int, list[str]] = {}

        def add(status: int, code: str) -> None:
            out.setdefault(status, [])
            if code not in out[status]:
                out[status].append(code)

        if self.query is not None:
            add(400, INVALID)
            if issubclass(self.query, Page):
                add(400, INVALID_CURSOR)
        if self.body is not None:
            add(400, "invalid_json")
            add(400, "invalid_<field>" if self.field_codes else INVALID)
            add(413, "body_too_large")
        if self.scope is not None:
            add(401, "unauthorized")
            if self.scope == "write":
                add(403, api_tokens.READ_ONLY)
            if self.all_sites or path_ids or (self.query is not None and "site_id" in self.query.model_fields):
                add(403, api_tokens.WRONG_SITE)
        if path_ids:
            add(404, "not_found")
        for status, code in self.errors:
            add(status, code)
        return dict(sorted(out.items()))


def _details(error: ValidationError) -> list[dict[str, Any]]:
    return [{"field": ".".join(str(part) for part in item["loc"]) or None, "message": item["msg"],
             "type": item["type"]} for item in error.errors(include_url=False, include_input=False)]


def parse(model: type[BaseModel], data: Any, field_codes: bool = False) -> BaseModel:
    """``data`` checked by ``model``; 400 with each problem in ``details`` otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        details = _details(error)
        code = INVALID
        if field_codes and details and details[0]["field"]:
            code = "invalid_" + details[0]["field"].split(".")[0]
        raise ApiError(400, code, "; ".join(f"{d['field'] or 'body'}: {d['message']}" for d in details),
                       details) from None


def _query_data() -> dict[str, str]:
    repeated = [name for name, values in request.args.lists() if len(values) > 1]
    if repeated:
        raise ApiError(400, INVALID, f"give {repeated[0]} once",
                       [{"field": repeated[0], "message": "given more than once", "type": "repeated"}])
    return request.args.to_dict()


def operation(tag: str, summary: str, *, response: type[BaseModel] | None, query: type[BaseModel] | None = None,
              body: type[BaseModel] | None = None, scope: str | None = "read", all_sites: bool = False,
              status: int = 200, errors: Iterable[tuple[int, str]] = (), field_codes: bool = False,
              description: str = "") -> Callable:
    """Register a view's contract and enforce it; the view gets ``query=`` and ``body=`` models and
    returns a model instance of ``response`` (or a dict when ``response`` is None)."""
    meta = Operation(tag, summary, response, query, body, scope, all_sites, status, tuple(errors), field_codes,
                     description)

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def run(**kwargs):
            for name, value in kwargs.items():
                if isinstance(value, int) and not 1 <= value <= MAX_ID:
                    raise ApiError(404, "not_found", f"no such {name.removesuffix('_id')}")
            if meta.all_sites and current_token().site_id is not None:
                raise ApiError(403, api_tokens.WRONG_SITE, ALL_SITES_MESSAGE)
            if meta.query is not None:
                kwargs["query"] = parse(meta.query, _query_data())
            if meta.body is not None:
                kwargs["body"] = parse(meta.body, json_body(), meta.field_codes)
            result = view(**kwargs)
            if isinstance(result, BaseModel):
                response = current_app.response_class(result.model_dump_json(by_alias=True), mimetype="application/json")
                response.status_code = meta.status
                return response
            return result

        wrapped = run if scope is None else token_required(write=scope == "write")(run)
        wrapped.api_operation = meta
        return wrapped

    return decorator


def operation_of(view: Callable) -> Operation | None:
    return getattr(view, "api_operation", None)


# ---------------------------------------------------------------- site limits


def limit_to_site(stmt: Select, column, wanted: int | None) -> Select:
    """Rows of the token's site only (403 when another site is asked for), or of ``wanted``."""
    token_site = current_token().site_id
    if token_site is not None:
        if wanted is not None and wanted != token_site:
            raise ApiError(403, api_tokens.WRONG_SITE, WRONG_SITE_MESSAGE)
        return stmt.where(column == token_site)
    return stmt.where(column == wanted) if wanted is not None else stmt


def within_period(stmt: Select, column, query: Any) -> Select:
    """Rows whose ``column`` lies in the query's [from, to): the period every list filters by."""
    if query.from_ is not None:
        stmt = stmt.where(column >= query.from_)
    if query.to is not None:
        stmt = stmt.where(column < query.to)
    return stmt


def check_site(site_id: int | None, write: bool = False) -> None:
    """403 when the token may not read (or, with ``write``, change) a row of ``site_id``."""
    reason = api_tokens.refusal(current_token(), site_id, write)
    if reason is not None:
        raise ApiError(403, reason, WRONG_SITE_MESSAGE if reason == api_tokens.WRONG_SITE else "this token may only read")


def found(row: Any, what: str, ident: int) -> Any:
    if row is None:
        raise ApiError(404, "not_found", f"no {what} {ident}")
    return row


# ---------------------------------------------------------------- cursor pagination


def encode_cursor(last_id: int) -> str:
    raw = json.dumps({"before": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id the next page starts below; 400 ``invalid_cursor`` for anything not made by us."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))["before"]
    except (binascii.Error, ValueError, UnicodeDecodeError, TypeError, KeyError):
        raise ApiError(400, INVALID_CURSOR, "cursor is not a next_cursor this API gave") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID + 1:
        raise ApiError(400, INVALID_CURSOR, "cursor is not a next_cursor this API gave")
    return value


def paginate(db: Session, stmt: Select, id_column, page: Page, convert: Callable[[Any], BaseModel]) -> dict[str, Any]:
    """One page of ``stmt`` newest first: keyset on the id, so rows added between pages neither
    repeat nor shift the rows still to come.  Returns items and next_cursor for the list model."""
    if page.cursor is not None:
        stmt = stmt.where(id_column < decode_cursor(page.cursor))
    rows = db.execute(stmt.order_by(id_column.desc()).limit(page.limit + 1)).all()
    more = len(rows) > page.limit
    rows = rows[:page.limit]
    items = [convert(row) for row in rows]
    return {"items": items, "next_cursor": encode_cursor(items[-1].id) if more and items else None}
