"""Error pages: short, translated, and never a stack trace."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError

from webadmin import filters

MESSAGES = {400: _l("The request was not understood."), 403: _l("You do not have access to this page."),
            404: _l("Not found."), 429: _l("Too many requests."), 500: _l("Something went wrong on our side.")}


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error):
        return render_template("error.html", code=400,
                               message=_("The form expired or did not come from this site. Reload the page and try again.")), 400

    @app.errorhandler(filters.BadFilter)
    def bad_filter(error):
        # the same page with its default period: one click back to something that works
        kept = [(k, v) for k, v in request.args.items(multi=True) if k not in (*filters.PERIOD_ARGS, "format", "before")]
        back = request.path + (f"?{urlencode(kept)}" if kept else "")
        return render_template("error.html", code=400, message=error.description, back=back), 400

    for code in MESSAGES:
        app.register_error_handler(code, _handler(code))


API_PREFIX = "/api/"  # programs read the answer there: JSON in the API's error shape, never an HTML page
API_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 429: "too_many_requests", 500: "server_error"}


def _handler(code: int):
    def handle(error):
        if request.path.startswith(API_PREFIX):
            return jsonify({"error": {"code": API_CODES[code], "message": str(MESSAGES[code])}}), code
        return render_template("error.html", code=code, message=MESSAGES[code]), code

    return handle
