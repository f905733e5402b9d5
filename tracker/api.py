"""The three hot endpoints (``POST /v/start``, ``/v/ping``, ``/v/leave``) as plain WSGI.

Every page view of every customer site lands here, so the request path is kept thin: no
Flask request context, routing or Response object (they cost about as much CPU as the
one-statement session create itself).  ``HotPaths`` answers these three POSTs and hands
everything else, including other methods on the same URLs (405), to the Flask app.  The
guards are the same either way: rate limit, body cap and JSON checks, site key, Origin
against the site's domains, CORS on the answer.  ``OPTIONS`` on the three URLs is the CORS
preflight an integration posting ``application/json`` needs: answered here too, for the origins
of the sites' domains only.

A request without an ``Origin`` (every browser sends one on a POST) is not the snippet: it
is answered, but never given a pool number; and one client's share of a site's pools is
limited (``allocation.Limits``, the ``[tracker]`` settings).

Each request runs on one Connection from the tracker engine's pool (no Session: there is
nothing for the ORM to track).  On PostgreSQL it is in autocommit mode, so the one-statement
create and heartbeat cost one round trip (``allocation`` opens a transaction where several
writes belong together); on SQLite the request is one transaction under ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from astertrack.config import SCHEMA
from astertrack.db.types import utcnow
from astertrack.dni import allocation
from astertrack.dni.sources import SiteRouting
from astertrack.phones import format_display
from tracker.guard import BadRequest, RateLimiter, client_ip, origin_allowed, read_json_body
from tracker.maintenance import Maintenance
from tracker.sitecache import SiteCache

log = logging.getLogger(__name__)

Answer = tuple[int, list[tuple[str, str]], bytes]
Action = Callable[[Connection, SiteRouting, dict[str, Any], dict[str, Any]], Answer]
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
_JSON = ("Content-Type", "application/json")
_PREFLIGHT_HEADERS = (("Access-Control-Allow-Methods", "POST"), ("Access-Control-Allow-Headers", "Content-Type"),
                      ("Access-Control-Max-Age", "7200"), ("Vary", "Origin"))  # 7200: Chromium's cap
_DEBUG_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "keyword", "referrer",
                 "gclid", "yclid", "fbclid", "ga_client_id", "ym_client_id")


def json_answer(body: dict[str, Any], status: int = 200) -> Answer:
    return status, [_JSON], json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _with_cors(answer: Answer, origin: str | None) -> Answer:
    if origin:
        answer[1].extend((("Access-Control-Allow-Origin", origin), ("Vary", "Origin")))
    return answer


class _BodyStream:
    """What ``read_json_body`` needs from the WSGI input: never read past the body (the dev
    server's socket would block), so without a length only a terminated input is read."""

    def __init__(self, environ: dict[str, Any], length: int | None):
        self.stream = environ["wsgi.input"]
        self.length = length
        self.readable = length is not None or bool(environ.get("wsgi.input_terminated"))

    def read(self, size: int) -> bytes:
        if not self.readable:
            return b""
        return self.stream.read(size if self.length is None else min(size, self.length))


def _content_length(environ: dict[str, Any]) -> int | None:
    raw = environ.get("CONTENT_LENGTH")
    if not raw:
        return None
    try:
        return max(0, int(raw))
    except ValueError:
        return None


def _default_limits() -> allocation.Limits:
    return allocation.Limits.from_settings({name: key.default for name, key in SCHEMA["tracker"].items()})


class TrackerApi:
    def __init__(self, *, sites: SiteCache, limiter: RateLimiter, maintenance: Maintenance, max_body: int,
                 trust_xff: bool, engine: Engine, limits: allocation.Limits | None = None):
        self.sites = sites
        self.limiter = limiter
        self.maintenance = maintenance
        self.max_body = max_body
        self.trust_xff = trust_xff
        self.limits = limits if limits is not None else _default_limits()  # an installation's defaults
        self._warned_proxy = False
        if engine.dialect.name == "sqlite":
            engine = engine.execution_options(sqlite_begin="IMMEDIATE")  # the write lock up front
        self.engine = engine  # PostgreSQL: in autocommit mode (``tracker.create_app``)
        self.actions: dict[str, Action] = {"/v/start": self.start, "/v/ping": self.ping, "/v/leave": self.leave}

    # ------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn
            conn.commit()  # SQLite's transaction; a no-op in autocommit

    def client(self, environ: dict[str, Any]) -> str:
        """The client address; says once when a proxy relays requests the tracker does not trust
        it for (then every visitor is one client to the per-address limit)."""
        ip = client_ip(environ, self.trust_xff)
        if not self.trust_xff and not self._warned_proxy and environ.get("HTTP_X_FORWARDED_FOR"):
            try:
                relayed = ipaddress.ip_address(ip).is_private  # loopback included: our own proxy
            except ValueError:
                relayed = False
            if relayed:
                self._warned_proxy = True
                log.warning("requests arrive through a proxy at %s with X-Forwarded-For, but [tracker] "
                            "trust_forwarded_for is off: every visitor counts as that one address "
                            "(max_holds_per_ip, rate limit)", ip)
        return ip

    def preflight(self, environ: dict[str, Any]) -> Answer:
        """The CORS preflight: the allow-headers for an origin of any site's domains, none otherwise
        (the browser then refuses the request, as it should)."""
        origin = environ.get("HTTP_ORIGIN")
        if not origin:
            return 204, [("Allow", "OPTIONS, POST")], b""
        try:
            known = self.sites.origin_known(origin)
        except OperationalError:
            log.exception("database unavailable")
            return json_answer({"error": "temporarily unavailable"}, 503)
        if not known:
            return json_answer({"error": "origin not allowed"}, 403)
        return 204, [("Access-Control-Allow-Origin", origin), *_PREFLIGHT_HEADERS], b""

    def answer(self, path: str, environ: dict[str, Any]) -> Answer:
        """Guards, then the action; every refusal is JSON ``{"error": ...}``."""
        action = self.actions[path]
        origin = environ.get("HTTP_ORIGIN")
        self.maintenance.ensure_started()
        try:
            allowed, retry_after = self.limiter.allow(self.client(environ))
            if not allowed:
                status, headers, body = json_answer({"error": "too many requests"}, 429)
                headers.append(("Retry-After", str(retry_after)))
                return _with_cors((status, headers, body), origin)
            length = _content_length(environ)
            data = read_json_body(_BodyStream(environ, length), length, self.max_body)
            key = data.get("k")
            if not isinstance(key, str) or not key:
                raise BadRequest(400, "missing site key: field 'k'")
            site = self.sites.get(key[:32])
            if site is None:
                raise BadRequest(404, "unknown site key")
            if origin is not None and not origin_allowed(origin, site.domains):
                return json_answer({"error": "origin not allowed for this site"}, 403)
            with self._connection() as conn:
                answer = action(conn, site, data, environ)
            return _with_cors(answer, origin)
        except BadRequest as exc:
            return _with_cors(json_answer({"error": exc.message}, exc.status), origin)
        except OperationalError:
            log.exception("database unavailable")
            return _with_cors(json_answer({"error": "temporarily unavailable"}, 503), origin)

    # ------------------------------------------------------------ actions

    def start(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]) -> Answer:
        visit = allocation.clean_visit(data)
        visit["ip"] = allocation.clean_text(client_ip(environ, self.trust_xff), 45)
        browser = environ.get("HTTP_ORIGIN") is not None  # (an origin not allowed was refused already)
        header_ua = environ.get("HTTP_USER_AGENT")
        if header_ua:
            visit["user_agent"] = allocation.clean_text(header_ua, allocation.VISIT_FIELDS["user_agent"])
        offer = allocation.start_with(conn, site, visit, utcnow(),
                                      session_public_id=allocation.clean_text(data.get("sid"), 32),
                                      webdriver=data.get("wd") is True, interacted=data.get("interacted") is True,
                                      new_visitor=data.get("new") is True, limits=self.limits, browser=browser)
        return json_answer(_offer_body(site, offer, data.get("debug") is True, visit))

    def ping(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]) -> Answer:
        sid = allocation.clean_text(data.get("sid"), 32)
        if not sid:
            raise BadRequest(400, "missing session id: field 'sid'")
        offer = allocation.heartbeat_with(conn, site, sid, utcnow(),
                                          current_page=allocation.clean_text(data.get("page"), 2048),
                                          interacted=data.get("interacted") is True, limits=self.limits,
                                          browser=environ.get("HTTP_ORIGIN") is not None)
        if offer is None or not offer.live:
            return json_answer({"live": False})
        return json_answer(_offer_body(site, offer, data.get("debug") is True))

    def leave(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]) -> Answer:
        sid = allocation.clean_text(data.get("sid"), 32)
        if not sid:
            raise BadRequest(400, "missing session id: field 'sid'")
        allocation.unload_with(conn, site, sid, utcnow())
        return 204, [], b""


def _offer_body(site: SiteRouting, offer: allocation.Offer, debug: bool,
                visit: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "live": offer.live,
        "sid": offer.session_id,
        "kind": offer.kind,
        "number": offer.number,
        "display": _display(offer.number, site.display_format) if offer.number else None,
        "expires_at": offer.expires_at.isoformat().replace("+00:00", "Z") if offer.expires_at else None,
        "heartbeat": site.heartbeat_seconds,
        "selectors": list(site.replace_selectors),
        "replace": list(site.replace_numbers),
    }
    if debug:
        source = offer.source
        body["debug"] = {
            "source": f"{source.name} ({source.channel or source.kind})" if source else None,
            "visit": {k: visit[k] for k in _DEBUG_FIELDS if visit and visit.get(k)},
        }
    return body


@functools.lru_cache(maxsize=8192)
def _display(number: str, template: str) -> str:
    """Pool numbers and templates repeat on every page view: format each pair once."""
    return format_display(number, template)


class HotPaths:
    """WSGI middleware: the API's POSTs straight to ``TrackerApi``, the rest to Flask."""

    def __init__(self, api: TrackerApi, app: Callable[..., Iterable[bytes]]):
        self.api = api
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        method = environ.get("REQUEST_METHOD")
        if method not in ("POST", "OPTIONS") or path not in self.api.actions:
            return self.app(environ, start_response)
        try:
            if method == "OPTIONS":
                status, headers, body = self.api.preflight(environ)
            else:
                status, headers, body = self.api.answer(path, environ)
        except Exception:
            log.exception("tracker request failed: %s", path)
            status, headers, body = json_answer({"error": "internal error"}, 500)
        headers.append(("Content-Length", str(len(body))))
        start_response(_STATUS_LINES[status], headers)
        return [body]
