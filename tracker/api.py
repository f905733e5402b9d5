"""The hot endpoints (``POST /v/start``, ``/v/ping``, ``/v/leave``, ``/v/j``) and the web form's
(``POST /v/form``) as plain WSGI.

The visitor's journey (page views, clicks on numbers and links, forms: ``astertrack.journey``)
rides as an ``ev`` list on the heartbeat and the unload beacon, or on ``/v/j`` when the page flushes
it between heartbeats; the three hand it to the one ingestion (``_journey_batch``).  A malformed
batch is refused whole with 400 (413 past ``journey.ingest.MAX_BATCH`` events) before anything else
of the request is done.

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
limited (``allocation.Limits``, the ``[tracker]`` settings).  A form without an ``Origin`` is
refused: an enquiry comes from a browser on one of the site's pages.  Forms have a per-client
budget of their own (``guard.FORMS_PER_MINUTE``, never above ``rate_limit_per_minute``).

Each request runs on one Connection from the tracker engine's pool (no Session: there is
nothing for the ORM to track).  On PostgreSQL it is in autocommit mode, so the one-statement
create and heartbeat cost one round trip (``allocation`` opens a transaction where several
writes belong together); on SQLite the request is one transaction under ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from astertrack.config import SCHEMA
from astertrack.db.models import Enquiry, Lead, Site, VisitorSession
from astertrack.db.types import utcnow
from astertrack.dni import allocation
from astertrack.dni.sources import SiteRouting
from astertrack.journey import ingest
from astertrack.journey.cleaning import allowed_params, anonymise_ip, clean_url
from astertrack.leads import contacts
from astertrack.leads.enquiries import record_enquiry
from astertrack.leads.errors import LeadError
from astertrack.phones import format_display
from tracker import widget
from tracker.guard import (
    BadRequest,
    RateLimiter,
    client_ip,
    origin_allowed,
    read_form_body,
    read_json_body,
)
from tracker.maintenance import Maintenance
from tracker.sitecache import Privacy, SiteCache

log = logging.getLogger(__name__)

Answer = tuple[int, list[tuple[str, str]], bytes]
Action = Callable[[Connection, SiteRouting, dict[str, Any], dict[str, Any]], Answer]
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
_JSON = ("Content-Type", "application/json")
_PREFLIGHT_HEADERS = (("Access-Control-Allow-Methods", "POST"), ("Access-Control-Allow-Headers", "Content-Type"),
                      ("Access-Control-Max-Age", "7200"), ("Vary", "Origin"))  # 7200: Chromium's cap
FORM_PATH = "/v/form"
JOURNEY_PATH = "/v/j"
# A form's fields (what the forms script sends; an integration may post the same), each capped.
FORM_FIELDS = {"name": contacts.NAME_MAX, "phone": contacts.PHONE_RAW_MAX, "email": contacts.EMAIL_MAX + 1,
               "message": contacts.MESSAGE_MAX, "page": 8192, "form": 200}
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
                 trust_xff: bool, engine: Engine, limits: allocation.Limits | None = None,
                 form_limiter: RateLimiter | None = None, region: str = "RU"):
        self.sites = sites
        self.limiter = limiter
        self.form_limiter = form_limiter if form_limiter is not None else RateLimiter(0)
        self.region = region  # [general] default_region: a form's phone written without +
        self.maintenance = maintenance
        self.max_body = max_body
        self.trust_xff = trust_xff
        self.limits = limits if limits is not None else _default_limits()  # an installation's defaults
        self.clock: Callable[[], dt.datetime] = utcnow  # the simulator's parity tests set a simulated clock
        self._warned_proxy = False
        if engine.dialect.name == "sqlite":
            engine = engine.execution_options(sqlite_begin="IMMEDIATE")  # the write lock up front
        self.engine = engine  # PostgreSQL: in autocommit mode (``tracker.create_app``)
        self.actions: dict[str, Action] = {"/v/start": self.start, "/v/ping": self.ping, "/v/leave": self.leave,
                                           JOURNEY_PATH: self.journey, FORM_PATH: self.form}

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
            ip = self.client(environ)
            allowed, retry_after = self.limiter.allow(ip)
            if allowed and path == FORM_PATH:
                if origin is None:
                    raise BadRequest(403, "a form is accepted from a browser on the site's own pages only: "
                                          "no Origin header")
                allowed, retry_after = self.form_limiter.allow(ip)
            if not allowed:
                status, headers, body = json_answer({"error": "too many requests"}, 429)
                headers.append(("Retry-After", str(retry_after)))
                return _with_cors((status, headers, body), origin)
            length = _content_length(environ)
            if path == FORM_PATH:
                data = read_form_body(_BodyStream(environ, length), length, self.max_body,
                                      environ.get("CONTENT_TYPE"))
            else:
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
        privacy = self.sites.privacy(site.id)
        visit["ip"] = self._ip(environ, privacy)
        browser = environ.get("HTTP_ORIGIN") is not None  # (an origin not allowed was refused already)
        header_ua = environ.get("HTTP_USER_AGENT")
        if header_ua:
            visit["user_agent"] = allocation.clean_text(header_ua, allocation.VISIT_FIELDS["user_agent"])
        offer = allocation.start_with(conn, site, visit, self.clock(),
                                      session_public_id=allocation.clean_text(data.get("sid"), 32),
                                      webdriver=data.get("wd") is True, interacted=data.get("interacted") is True,
                                      new_visitor=data.get("new") is True, limits=self.limits, browser=browser)
        body = _offer_body(site, offer, data.get("debug") is True, visit)
        if privacy.allowed_params:  # the snippet cleans page URLs with the same list
            body["q"] = sorted(privacy.allowed_params)
        if self.sites.widget_revision(site.id):  # j.js loads the widget (tracker/widget.py)
            body["w"] = self.sites.widget_revision(site.id)
        return json_answer(body)

    def ping(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]) -> Answer:
        sid = allocation.clean_text(data.get("sid"), 32)
        if not sid:
            raise BadRequest(400, "missing session id: field 'sid'")
        batch = self._parse_journey(site, data)
        offer = allocation.heartbeat_with(conn, site, sid, self.clock(),
                                          current_page=allocation.clean_text(data.get("page"), 2048),
                                          interacted=data.get("interacted") is True, limits=self.limits,
                                          browser=environ.get("HTTP_ORIGIN") is not None)
        if offer is None or not offer.live:
            self._store_journey(conn, site, sid, batch)  # the pages seen until the hold ended
            return json_answer({"live": False})
        self._store_journey(conn, site, sid, batch)
        return json_answer(_offer_body(site, offer, data.get("debug") is True))

    def leave(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]) -> Answer:
        sid = allocation.clean_text(data.get("sid"), 32)
        if not sid:
            raise BadRequest(400, "missing session id: field 'sid'")
        batch = self._parse_journey(site, data)
        allocation.unload_with(conn, site, sid, self.clock())
        self._store_journey(conn, site, sid, batch)
        return 204, [], b""

    def journey(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]) -> Answer:
        """A flush of the page's journey between heartbeats (a click on a number, the page hidden)."""
        sid = allocation.clean_text(data.get("sid"), 32)
        if not sid:
            raise BadRequest(400, "missing session id: field 'sid'")
        batch = self._parse_journey(site, data)
        if not batch:
            raise BadRequest(400, "no events: field 'ev' must list at least one")
        try:
            stored = ingest.store(conn, site.id, sid, batch)
        except ingest.BatchError as exc:
            raise BadRequest(exc.status, exc.message) from None
        if stored.refused:
            return json_answer({"error": f"this session's journey is full (limit {ingest.SESSION_CAP} events): "
                                         f"{stored.refused} not stored", "stored": len(batch) - stored.refused}, 429)
        return 204, [], b""

    def _ip(self, environ: dict[str, Any], privacy: Privacy) -> str | None:
        ip = allocation.clean_text(client_ip(environ, self.trust_xff), 45)
        return anonymise_ip(ip) if privacy.anonymise_ip else ip

    def _parse_journey(self, site: SiteRouting, data: dict[str, Any]) -> ingest.Batch:
        try:
            return ingest.parse_batch(data.get("ev"), utcnow(), self.sites.privacy(site.id).allowed_params)
        except ingest.BatchError as exc:
            raise BadRequest(exc.status, exc.message) from None

    @staticmethod
    def _store_journey(conn: Connection, site: SiteRouting, sid: str, batch: ingest.Batch) -> None:
        """The events riding on a heartbeat or unload: an unknown session or a full one stores
        nothing more and does not fail the heartbeat."""
        if batch:
            try:
                ingest.store(conn, site.id, sid, batch)
            except ingest.BatchError:
                pass

    def form(self, conn: Connection, site: SiteRouting, data: dict[str, Any], environ: dict[str, Any]) -> Answer:
        """A web form's enquiry: recorded by the leads core (one lead per phone or e-mail), with
        the attribution of the visitor's session when it is one of this site's."""
        fields = {name: allocation.clean_text(data.get(name), limit) for name, limit in FORM_FIELDS.items()}
        if not fields["phone"] and not fields["email"]:
            raise BadRequest(400, "a form enquiry needs a phone or an e-mail: fields 'phone', 'email'")
        sid = allocation.clean_text(data.get("sid"), 32)
        callback = str(data.get("callback", "")).strip().lower() in ("1", "true", "yes", "on")
        channel = widget.form_channel(data, fields, self.region)  # the website widget's pop-up and callback button post here too
        callback = callback or channel == "callback"
        header_ua = environ.get("HTTP_USER_AGENT")
        with _unit_of_work(conn) as db:
            visit = None
            if sid:  # another site's session or an unknown one: recorded without attribution
                visit = db.scalar(select(VisitorSession).where(VisitorSession.public_id == sid,
                                                              VisitorSession.site_id == site.id))
            try:
                enquiry = record_form_enquiry(db, db.get(Site, site.id), fields, visit=visit, callback=callback,
                                              ip=self._ip(environ, self.sites.privacy(site.id)),
                                              user_agent=allocation.clean_text(header_ua, 512), now=utcnow(),
                                              region=self.region, channel=channel)
            except LeadError as exc:
                raise BadRequest(400, f"field '{exc.field}': {exc}") from None
            if channel != "form":
                return json_answer(widget.form_answer(db, enquiry))
        return 204, [], b""


@contextlib.contextmanager
def _unit_of_work(conn: Connection) -> Iterator[Session]:
    """A Session on the request's connection for writes that stand or fall together (the lead
    and its enquiry): in a transaction of its own where the connection is in autocommit mode
    (PostgreSQL's), in the request's ``BEGIN IMMEDIATE`` one on SQLite.  Committed on success."""
    autocommit = conn.dialect.name == "postgresql" and conn.connection.driver_connection.autocommit is True
    if autocommit:
        conn.commit()  # ends the autobegun block (nothing of it is pending in autocommit)
        conn.execution_options(isolation_level=conn.default_isolation_level)
    try:
        with Session(bind=conn, expire_on_commit=False) as db:
            try:
                yield db
                db.commit()
            except BaseException:
                db.rollback()
                raise
    finally:
        if autocommit:
            conn.execution_options(isolation_level="AUTOCOMMIT")


def record_form_enquiry(db: Session, site: Site, fields: dict[str, str | None], *, visit: VisitorSession | None,
                        callback: bool, ip: str | None, user_agent: str | None, now: dt.datetime,
                        region: str, channel: str = "form") -> Enquiry:
    """The one place the tracker hands a form to the leads core (``record_enquiry``: the lead, its
    dedup, the visit's attribution) and, when asked, a callback to the callbacks core."""
    enquiry = record_enquiry(db, site, channel, at=now, visitor_session=visit, name=fields["name"],
                             phone=fields["phone"], email=fields["email"], message=fields["message"],
                             page_url=clean_url(fields["page"], allowed_params(site.query_params_allowed)),
                             region=region, ip=ip, user_agent=user_agent)
    enquiry.form_name = fields["form"]
    if callback and enquiry.phone:  # a phone that does not parse is kept, flagged, never dialled
        from astertrack.leads.callbacks import request_callback  # the rare path: imported when used

        db.flush()
        request_callback(db, site, enquiry.phone, "callback", lead=db.get(Lead, enquiry.lead_id), enquiry=enquiry,
                         visitor_session=visit, now=now, region=region)
    return enquiry


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
