"""Russian and English interface: the user's setting, else Accept-Language, else [web] default_locale.

Dates are shown in the time zone of the first site (or UTC when there is none); numbers and
dates are formatted by the chosen locale through Flask-Babel's filters.
"""

from __future__ import annotations

from flask import Flask, current_app, g, request
from flask_babel import Babel, get_locale
from flask_login import current_user
from sqlalchemy import select

from astertrack.db.models import Site
from webadmin.db import get_session

LOCALES = ("ru", "en")
babel = Babel()


def select_locale() -> str:
    if current_user and getattr(current_user, "is_authenticated", False) and current_user.locale in LOCALES:
        return current_user.locale
    if request:
        best = request.accept_languages.best_match(LOCALES)
        if best:
            return best
    return current_app.config["BABEL_DEFAULT_LOCALE"]


def display_timezone() -> str:
    if "display_tz" not in g:
        tz = get_session().scalars(select(Site.timezone).order_by(Site.id).limit(1)).first()
        g.display_tz = tz or "UTC"
    return g.display_tz


def init_app(app: Flask) -> None:
    babel.init_app(app, locale_selector=select_locale, timezone_selector=display_timezone)
    app.jinja_env.globals["get_locale"] = get_locale
