"""Log in, log out, switch interface language."""

from flask import Blueprint

bp = Blueprint("auth", __name__)

from webadmin.auth import views  # noqa: E402,F401
