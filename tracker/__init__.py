"""The public tracker: the JS snippet and the number-insertion API it calls.

Served by gunicorn separately from the admin (it is the high-traffic, internet-facing part):
``gunicorn --worker-class gthread --threads 8 -w 2 'tracker:create_app()'`` or
``gunicorn tracker.wsgi:app``.

Endpoints (neutral names, so ad blockers' generic rules do not catch them)::

    GET  /v.js       the snippet
    POST /v/start    page load: session start/continue, returns the number to show
    POST /v/ping     heartbeat: slides the hold, may return a new number
    POST /v/leave    page unload (navigator.sendBeacon): short grace instead of release
    POST /v/j        the visitor's journey between heartbeats (page views, clicks; ping and leave carry it too)
    GET  /f.js       the forms script, loaded by the snippet only on pages with a form to capture
    GET  /j.js       the journey script (page views, clicks; lazy allocation's claim), loaded once a visit has a session
    POST /v/form     a web form's enquiry (navigator.sendBeacon on the form's submit); the widget's too
    GET  /w.js       the website widget, loaded by j.js only on sites that enable it; GET /v/w its config
    POST /v/chat/... the website chat (start, send, read, typing, contact, close); GET /v/chat/history,
                     GET /v/chat/stream (Server-Sent Events on the app's stream hub): tracker/chat.py
    POST /v/mc       the visit's code for the site's WhatsApp and Telegram links (docs/messengers.md)
    POST /v/tg/<key> the site's Telegram bot's webhook; POST /v/wa/<key> its WhatsApp provider's
    GET  /healthz    health; GET /metrics  Prometheus, only with [general] metrics_token

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
import logging
from pathlib import Path

from flask import Flask, Response, request
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from astertrack.config import Config, load_config
from astertrack.db.engine import engine_from_config, make_session_factory, normalise_url
from astertrack.dni.allocation import Limits
from tracker.api import HotPaths, TrackerApi
from tracker.guard import FORMS_PER_MINUTE, RateLimiter
from tracker.maintenance import Maintenance
from tracker.sitecache import SiteCache

__all__ = ["create_app"]

log = logging.getLogger(__name__)
SNIPPET_PATH = Path(__file__).parent / "static" / "astertrack.js"
FORMS_SCRIPT_PATH = Path(__file__).parent / "static" / "astertrack-forms.js"
JOURNEY_SCRIPT_PATH = Path(__file__).parent / "static" / "astertrack-journey.js"


def tracker_engine(config: Config) -> Engine:
    """The shared engine settings, tuned for a high-volume public endpoint on PostgreSQL.

    * statements prepared on first use, with generic plans (no re-planning per page view);
    * ``synchronous_commit = off`` (unless ``[tracker] synchronous_commit``): a commit does not
      wait for the WAL flush.  A PostgreSQL crash can lose the last fraction of a second of
      visitor sessions, never corrupt anything; it removes the disk from every page view.
    * no pre-ping round trip per request: after a database restart a request on a dead pooled
      connection fails with 503 (the visitor keeps the page's own number) and the pool
      replaces the connection.

    On PostgreSQL its connections are in autocommit mode from the start: the API's creates and
    heartbeats are one statement each (see ``tracker.api``), and switching a pooled connection
    into autocommit and back on every request cost a tenth of a create's CPU.  The site cache,
    maintenance, metrics and health use it through Sessions bound to ``transactional(engine)``.
    """
    db = config.values["database"]
    url = normalise_url(db["url"])
    if make_url(url).get_backend_name() != "postgresql":
        return engine_from_config(config)
    # prepare_threshold=0: psycopg prepares each statement on first use; with a generic plan
    # PostgreSQL stops re-planning them (planning cost more than running these index lookups).
    engine = create_engine(url, pool_size=db["pool_size"], max_overflow=db["pool_size"], echo=db["echo"],
                           pool_pre_ping=False, pool_recycle=3600, connect_args={"prepare_threshold": 0},
                           isolation_level="AUTOCOMMIT")
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


def transactional(engine: Engine) -> Engine:
    """The same pool with ordinary transactions, for Sessions (PostgreSQL's default isolation)."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="READ COMMITTED")


def create_app(config: Config | None = None, session_factory: sessionmaker[Session] | None = None) -> Flask:
    config = config if config is not None else load_config()
    settings = config.values["tracker"]
    if session_factory is None:
        api_engine = tracker_engine(config)
        session_factory = make_session_factory(transactional(api_engine))
    else:  # a caller's factory (tests): the API gets autocommit per connection instead
        api_engine = session_factory.kw["bind"]
        if api_engine.dialect.name == "postgresql":
            api_engine = api_engine.execution_options(isolation_level="AUTOCOMMIT")
    app = Flask(__name__, static_folder=None)
    sites = SiteCache(session_factory, settings["site_cache_seconds"])
    limiter = RateLimiter(settings["rate_limit_per_minute"])
    form_limiter = RateLimiter(min(settings["rate_limit_per_minute"], FORMS_PER_MINUTE))  # 0: off, as the other
    maintenance = Maintenance(session_factory, settings["maintenance_seconds"], settings["sample_seconds"])
    api = TrackerApi(sites=sites, limiter=limiter, maintenance=maintenance, max_body=settings["max_body_bytes"],
                     trust_xff=settings["trust_forwarded_for"], engine=api_engine,
                     limits=Limits.from_settings(settings), form_limiter=form_limiter,
                     region=config.values["general"]["default_region"])
    scripts = {path: (path.read_bytes(), hashlib.sha256(path.read_bytes()).hexdigest()[:20])
               for path in (SNIPPET_PATH, FORMS_SCRIPT_PATH, JOURNEY_SCRIPT_PATH)}
    app.extensions["astertrack_tracker"] = {"sites": sites, "limiter": limiter, "maintenance": maintenance,
                                            "api": api}
    # The API's POSTs skip Flask (see tracker.api); these routes give the same answers to
    # anything that calls the Flask app underneath, and let Flask answer other methods (405).
    app.wsgi_app = HotPaths(api, app.wsgi_app)  # type: ignore[method-assign]

    def flask_answer(path: str) -> Response:
        status, headers, body = api.answer(path, request.environ)
        return Response(body, status=status, headers=headers)

    @app.post("/v/start")
    def start():
        return flask_answer("/v/start")

    @app.post("/v/ping")
    def ping():
        return flask_answer("/v/ping")

    @app.post("/v/leave")
    def leave():
        return flask_answer("/v/leave")

    @app.post("/v/j")
    def journey():
        return flask_answer("/v/j")

    @app.post("/v/form")
    def form():
        return flask_answer("/v/form")

    def serve_script(path: Path) -> Response:
        body, etag = scripts[path]
        response = Response(body, mimetype="application/javascript")
        response.headers["Cache-Control"] = "public, max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.set_etag(etag)
        return response.make_conditional(request)

    @app.get("/v.js")
    def script():
        return serve_script(SNIPPET_PATH)

    @app.get("/f.js")
    def forms_script():
        return serve_script(FORMS_SCRIPT_PATH)

    @app.get("/j.js")
    def journey_script():
        return serve_script(JOURNEY_SCRIPT_PATH)

    from tracker import widget

    widget.register(app, sites, session_factory)  # GET /w.js and /v/w, the website widget (docs/widget.md)

    from tracker import messengers

    messengers.register(app, api, session_factory, config)  # POST /v/mc, POST /v/tg/<key>, /v/wa/<key> (docs/messengers.md)

    from tracker import chat

    # the website chat (docs/widget.md): its POSTs are the API's actions, its stream on the app's hub
    endpoints = chat.register(app, api, session_factory, settings["chat_poll_seconds"])
    maintenance.on_chat_change = endpoints.hub.wake

    from astertrack.ops import metrics

    metrics.init_flask(app, session_factory, token=config.values["general"]["metrics_token"])
    return app
