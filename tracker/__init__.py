"""The public tracker: the JS snippet and the number-insertion API it calls.

Served by gunicorn separately from the admin (it is the high-traffic, internet-facing part):
``gunicorn --worker-class gthread --threads 8 -w 2 'tracker:create_app()'`` or
``gunicorn tracker.wsgi:app``.

Endpoints (neutral names, so ad blockers' generic rules do not catch them)::

    GET  /v.js       the snippet
    POST /v/start    page load: session start/continue, returns the number to show
    POST /v/ping     heartbeat: slides the hold, may return a new number
    POST /v/leave    page unload (navigator.sendBeacon): short grace instead of release
    GET  /healthz    health; GET /metrics  Prometheus (restrict it at the proxy)

Bodies are JSON sent as ``text/plain`` (a CORS "simple request": no preflight round trip).

**First-party serving.**  Put the tracker under a path of the customer's own site so the
snippet and its API are same-origin and third-party block lists do not apply; the snippet
derives the API address from its own URL.

nginx::

    location /ct/ {
        proxy_pass http://127.0.0.1:8081/;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
    location = /ct/metrics { deny all; }

Apache (mod_proxy, mod_proxy_http; mod_proxy appends X-Forwarded-For itself)::

    ProxyPreserveHost On
    ProxyPass        "/ct/metrics" "!"
    ProxyPass        "/ct/" "http://127.0.0.1:8081/"
    ProxyPassReverse "/ct/" "http://127.0.0.1:8081/"

The tracker trusts only the last X-Forwarded-For hop (the one your proxy appended), so a
visitor cannot spoof their address.  Set ``[tracker] trust_forwarded_for = yes`` and put on every page
``<script async src="/ct/v.js" data-key="SITE_PUBLIC_KEY"></script>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from astertrack import allocation
from astertrack.config import Config, load_config
from astertrack.db import engine_from_config, make_session_factory, normalise_url, session_scope
from astertrack.dbtypes import utcnow
from astertrack.phones import format_display
from astertrack.sources import SiteRouting
from tracker.guard import BadRequest, RateLimiter, client_ip, origin_allowed, read_json_body
from tracker.maintenance import Maintenance
from tracker.sitecache import SiteCache

__all__ = ["create_app"]

log = logging.getLogger(__name__)
SNIPPET_PATH = Path(__file__).parent / "static" / "astertrack.js"
_DEBUG_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "keyword", "referrer",
                 "gclid", "yclid", "fbclid", "ga_client_id", "ym_client_id")


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status=status,
                    mimetype="application/json")


def _offer_body(site: SiteRouting, offer: allocation.Offer, debug: bool,
                visit: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "live": offer.live,
        "sid": offer.session_id,
        "kind": offer.kind,
        "number": offer.number,
        "display": format_display(offer.number, site.display_format) if offer.number else None,
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


def tracker_engine(config: Config) -> Engine:
    """The shared engine settings, tuned for a high-volume public endpoint on PostgreSQL.

    * statements prepared on first use, with generic plans (no re-planning per page view);
    * ``synchronous_commit = off`` (unless ``[tracker] synchronous_commit``): a commit does not
      wait for the WAL flush.  A PostgreSQL crash can lose the last fraction of a second of
      visitor sessions, never corrupt anything; it removes the disk from every page view.
    * no pre-ping round trip per request: after a database restart a request on a dead pooled
      connection fails with 503 (the visitor keeps the page's own number) and the pool
      replaces the connection.
    """
    db = config.values["database"]
    url = normalise_url(db["url"])
    if make_url(url).get_backend_name() != "postgresql":
        return engine_from_config(config)
    # prepare_threshold=0: psycopg prepares each statement on first use; with a generic plan
    # PostgreSQL stops re-planning them (planning cost more than running these index lookups).
    engine = create_engine(url, pool_size=db["pool_size"], max_overflow=db["pool_size"], echo=db["echo"],
                           pool_pre_ping=False, pool_recycle=3600, connect_args={"prepare_threshold": 0})
    settings = ["SET plan_cache_mode TO force_generic_plan"]
    if not config.values["tracker"]["synchronous_commit"]:
        settings.append("SET synchronous_commit TO OFF")

    @event.listens_for(engine, "connect")
    def _session_settings(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            for statement in settings:
                cursor.execute(statement)
        dbapi_connection.commit()

    return engine


def create_app(config: Config | None = None, session_factory: sessionmaker[Session] | None = None) -> Flask:
    config = config if config is not None else load_config()
    settings = config.values["tracker"]
    if session_factory is None:
        session_factory = make_session_factory(tracker_engine(config))
    app = Flask(__name__, static_folder=None)
    sites = SiteCache(session_factory, settings["site_cache_seconds"])
    limiter = RateLimiter(settings["rate_limit_per_minute"])
    maintenance = Maintenance(session_factory, settings["maintenance_seconds"], settings["sample_seconds"])
    max_body = settings["max_body_bytes"]
    trust_xff = settings["trust_forwarded_for"]
    snippet = SNIPPET_PATH.read_bytes()
    snippet_etag = hashlib.sha256(snippet).hexdigest()[:20]
    app.extensions["astertrack_tracker"] = {"sites": sites, "limiter": limiter, "maintenance": maintenance}

    def with_cors(response: Response, origin: str | None) -> Response:
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    def handle(action) -> Response:
        origin = request.headers.get("Origin")
        maintenance.ensure_started()
        try:
            allowed, retry_after = limiter.allow(client_ip(request.environ, trust_xff))
            if not allowed:
                response = _json({"error": "too many requests"}, 429)
                response.headers["Retry-After"] = str(retry_after)
                return with_cors(response, origin)
            data = read_json_body(request.stream, request.content_length, max_body)
            key = data.get("k")
            if not isinstance(key, str) or not key:
                raise BadRequest(400, "missing site key: field 'k'")
            site = sites.get(key[:32])
            if site is None:
                raise BadRequest(404, "unknown site key")
            if origin is not None and not origin_allowed(origin, site.domains):
                return _json({"error": "origin not allowed for this site"}, 403)
            with session_scope(session_factory) as db:
                response = action(db, site, data)
            return with_cors(response, origin)
        except BadRequest as exc:
            return with_cors(_json({"error": exc.message}, exc.status), origin)
        except OperationalError:
            log.exception("database unavailable")
            return with_cors(_json({"error": "temporarily unavailable"}, 503), origin)

    def start_action(db: Session, site: SiteRouting, data: dict[str, Any]) -> Response:
        visit = allocation.clean_visit(data)
        visit["ip"] = allocation.clean_text(client_ip(request.environ, trust_xff), 45)
        header_ua = request.headers.get("User-Agent")
        if header_ua:
            visit["user_agent"] = allocation.clean_text(header_ua, allocation.VISIT_FIELDS["user_agent"])
        offer = allocation.start(db, site, visit, utcnow(),
                                 session_public_id=allocation.clean_text(data.get("sid"), 32),
                                 webdriver=data.get("wd") is True, interacted=data.get("interacted") is True,
                                 new_visitor=data.get("new") is True)
        return _json(_offer_body(site, offer, data.get("debug") is True, visit))

    def ping_action(db: Session, site: SiteRouting, data: dict[str, Any]) -> Response:
        sid = allocation.clean_text(data.get("sid"), 32)
        if not sid:
            raise BadRequest(400, "missing session id: field 'sid'")
        offer = allocation.heartbeat(db, site, sid, utcnow(),
                                     current_page=allocation.clean_text(data.get("page"), 2048),
                                     interacted=data.get("interacted") is True)
        if offer is None or not offer.live:
            return _json({"live": False})
        return _json(_offer_body(site, offer, data.get("debug") is True))

    def leave_action(db: Session, site: SiteRouting, data: dict[str, Any]) -> Response:
        sid = allocation.clean_text(data.get("sid"), 32)
        if not sid:
            raise BadRequest(400, "missing session id: field 'sid'")
        allocation.unload(db, site, sid, utcnow())
        return Response(status=204)

    @app.post("/v/start")
    def start():
        return handle(start_action)

    @app.post("/v/ping")
    def ping():
        return handle(ping_action)

    @app.post("/v/leave")
    def leave():
        return handle(leave_action)

    @app.route("/v/<path:_rest>", methods=["OPTIONS"])
    def preflight(_rest: str):
        # Only reached if a page sends JSON with a non-simple content type; the real request
        # is still checked against the site's domains.
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "86400"
        return with_cors(response, request.headers.get("Origin"))

    @app.get("/v.js")
    def script():
        response = Response(snippet, mimetype="application/javascript")
        response.headers["Cache-Control"] = "public, max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.set_etag(snippet_etag)
        return response.make_conditional(request)

    from astertrack import metrics

    metrics.init_flask(app, session_factory)
    return app
