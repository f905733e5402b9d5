"""The website widget's tracker side (docs/widget.md): its script (``GET /w.js``), its per-site
config (``GET /v/w?k=KEY``: cached per site, with an ETag) and what its submissions add to ``/v/form``.

Submissions take the web form's one path (``TrackerApi.form``: the same guards, body cap, rate
limits, Origin check and ``record_form_enquiry``) with a ``channel`` field: ``lead_capture`` (the
pop-up) or ``callback`` (the callback button, which also makes the ``CallbackRequest`` the AMI
listener dials).  Their answer is JSON the widget shows: for a callback, when it will be dialled.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import CallbackRequest, Enquiry, Site
from astertrack.db.types import utcnow
from astertrack.leads import widget as site_widget
from astertrack.phones import try_normalize
from tracker.guard import BadRequest, origin_allowed

SCRIPT_PATH = Path(__file__).parent / "static" / "astertrack-widget.js"
CONFIG_PATH = "/v/w"
CHANNELS = ("form", "lead_capture", "callback")


def form_channel(data: dict[str, Any], fields: dict[str, str | None], region: str) -> str:
    """The enquiry's channel (``form`` unless the widget says otherwise); the widget's two need a
    phone that can be dialled: refused with a message before anything is recorded."""
    channel = data.get("channel") or "form"
    if channel not in CHANNELS:
        raise BadRequest(400, f"field 'channel': expected one of {', '.join(CHANNELS)}")
    if channel != "form" and not try_normalize(fields.get("phone") or "", region):
        raise BadRequest(400, "field 'phone': not a phone number we could call")
    return str(channel)


def form_answer(db: Session, enquiry: Enquiry) -> dict[str, Any]:
    """What the widget shows after a submission: for a callback, the moment it is due (None: now)."""
    body: dict[str, Any] = {"ok": True}
    if enquiry.channel == "callback":
        db.flush()
        request_ = db.scalar(select(CallbackRequest).where(CallbackRequest.lead_id == enquiry.lead_id,
                                                           CallbackRequest.state.in_(("scheduled", "dialing")))
                             .order_by(CallbackRequest.id.desc()).limit(1))
        due = request_.next_attempt_at if request_ is not None else None
        body["at"] = due.isoformat().replace("+00:00", "Z") if due is not None and due > utcnow() else None
    return body


class ConfigCache:
    """Each site's config answer, built at most once per ``ttl`` (an admin's save shows within it;
    the callback's next opening is recomputed as often)."""

    def __init__(self, session_factory, ttl: float):
        self.session_factory = session_factory
        self.ttl = max(ttl, 1.0)
        self._entries: dict[int, tuple[float, bytes, str]] = {}
        self._lock = threading.Lock()

    def get(self, site_id: int) -> tuple[bytes, str] | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(site_id)
        if entry is not None and now - entry[0] < self.ttl:
            return entry[1], entry[2]
        with self.session_factory() as db:
            site = db.get(Site, site_id)
            row = site_widget.load(db, site_id) if site is not None else None
            if row is None or not site_widget.any_channel(row):
                body = None
            else:
                body = json.dumps(site_widget.public_config(db, site, row, utcnow()), ensure_ascii=False,
                                  separators=(",", ":")).encode()
        if body is None:
            with self._lock:
                self._entries.pop(site_id, None)
            return None
        etag = hashlib.sha256(body).hexdigest()[:20]
        with self._lock:
            self._entries[site_id] = (now, body, etag)
        return body, etag

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def register(app: Flask, sites, session_factory) -> ConfigCache:
    """The widget's two GET routes on the tracker's Flask app."""
    script = SCRIPT_PATH.read_bytes()
    script_etag = hashlib.sha256(script).hexdigest()[:20]
    cache = ConfigCache(session_factory, sites.ttl)

    @app.get("/w.js")
    def widget_script():
        response = Response(script, mimetype="application/javascript")
        response.headers["Cache-Control"] = "public, max-age=3600"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.set_etag(script_etag)
        return response.make_conditional(request)

    @app.get(CONFIG_PATH)
    def widget_config():
        origin = request.headers.get("Origin")

        def refuse(status: int, message: str) -> Response:
            response = Response(json.dumps({"error": message}), status=status, mimetype="application/json")
            if origin:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Vary"] = "Origin"
            return response

        site = sites.get(request.args.get("k", "")[:32])
        if site is None:
            return refuse(404, "unknown site key")
        if origin is not None and not origin_allowed(origin, site.domains):
            return refuse(403, "origin not allowed for this site")
        found = cache.get(site.id)
        if found is None:
            return refuse(404, "the widget is off on this site")
        body, etag = found
        response = Response(body, mimetype="application/json")
        response.headers["Cache-Control"] = f"public, max-age={int(cache.ttl)}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if origin:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        response.set_etag(etag)
        return response.make_conditional(request)

    app.extensions.setdefault("astertrack_tracker", {})["widget"] = cache
    return cache
