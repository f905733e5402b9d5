"""Admin user management: logins, roles, the manager a user is, language, passwords."""

from flask import Blueprint

bp = Blueprint("users", __name__)

from webadmin.users import views  # noqa: E402,F401
