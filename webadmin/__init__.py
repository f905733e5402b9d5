"""The astertrack web admin: reports, call log with recordings, live board, settings.

``create_app(config=None, test_config=None)`` follows the flaskr/microblog factory: extensions
are module-level objects bound here, blueprints are packages registered with a prefix, and
the database is plain SQLAlchemy (the daemons share the same models without Flask).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, redirect, url_for
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix

from astertrack.config import Config, load_config
from webadmin import ami_banner, db, errors, filters, i18n, security
from webadmin.labels import (
    closed_by_label,
    column_label,
    hangup_cause_label,
    label_for,
    missed_reason_label,
    vocabularies,
)
from webadmin.settings_obj import WebSettings

__all__ = ["create_app"]


def create_app(config: Config | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    astertrack_config = config if config is not None else load_config()
    app.config.from_object(WebSettings(astertrack_config))
    if test_config:
        app.config.update(test_config)
    if not app.config["SECRET_KEY"]:
        raise RuntimeError("[web] secret_key is empty: set it in astertrack.conf (astertrack init writes one)")

    if app.config.get("TRUST_FORWARDED_FOR"):
        # One trusted proxy hop (nginx on the same host) supplies the client address and scheme.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
    db.init_app(app)
    security.init_app(app)
    i18n.init_app(app)
    ami_banner.init_app(app)  # the banner on every page while Asterisk is not followed

    from webadmin import api, auth, calls, conversions, leads, live, reports, settings, users, webhooks

    app.register_blueprint(auth.bp, url_prefix="/auth")
    app.register_blueprint(reports.bp, url_prefix="/reports")
    app.register_blueprint(calls.bp, url_prefix="/calls")
    app.register_blueprint(live.bp, url_prefix="/live")
    app.register_blueprint(settings.bp, url_prefix="/settings")
    app.register_blueprint(users.bp, url_prefix="/users")
    app.register_blueprint(leads.bp, url_prefix="/leads")
    app.register_blueprint(api.bp, url_prefix="/api/v1")  # token-authenticated JSON (CRMs)
    app.register_blueprint(api.tokens_bp, url_prefix="/settings/api-tokens")
    app.register_blueprint(webhooks.bp, url_prefix="/settings/webhooks")
    app.register_blueprint(conversions.bp, url_prefix="/settings/conversions")
    app.register_blueprint(__import__("webadmin.widget", fromlist=["bp"]).bp, url_prefix="/settings/widget")  # #25
    app.register_blueprint(__import__("webadmin.messengers", fromlist=["bp"]).bp, url_prefix="/settings/messengers")
    app.register_blueprint(__import__("webadmin.journey", fromlist=["bp"]).bp, url_prefix="/journey")  # #24 display
    app.register_blueprint(__import__("webadmin.chat", fromlist=["bp"]).bp, url_prefix="/chats")  # #25 managers' side
    app.register_blueprint(__import__("webadmin.speech", fromlist=["bp"]).bp, url_prefix="/speech")  # #26

    @app.get("/")
    def index():
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login"))
        if current_user.role == "manager":
            return redirect(url_for("calls.log"))
        return redirect(url_for("reports.sources"))

    app.jinja_env.globals["label_for"] = label_for
    app.jinja_env.globals["missed_reason_label"] = missed_reason_label
    app.jinja_env.globals["closed_by_label"] = closed_by_label
    app.jinja_env.globals["column_label"] = column_label
    app.jinja_env.globals["hangup_cause_label"] = hangup_cause_label
    app.jinja_env.globals["vocabularies"] = vocabularies
    app.jinja_env.filters["duration"] = filters.duration
    app.jinja_env.filters["byte_size"] = filters.byte_size
    app.jinja_env.globals["date_range"] = (filters.MIN_DATE.isoformat(), filters.MAX_DATE.isoformat())
    app.jinja_env.filters["reject_key"] = lambda mapping, key: {k: v for k, v in mapping.items() if k != key}
    errors.init_app(app)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    from astertrack.ops import metrics

    # Prometheus text (fleet figures from the database) for a scraper that holds
    # [general] metrics_token: every other page needs a login, and the address cannot tell a
    # local scraper from a visitor relayed by the reverse proxy.
    metrics.init_flask(app, app.extensions[db.EXTENSION], health_path=None,
                       token=astertrack_config.values["general"]["metrics_token"])

    if not app.debug and not app.testing:
        logging.getLogger("webadmin").setLevel(astertrack_config.values["general"]["log_level"])
    return app
