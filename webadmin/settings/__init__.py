"""Admin settings: sites, sources and rules, numbers and pools (with CSV import), managers,
groups, routing rules, callers' VIP marks and tags.  Everything is read from the database per
call, so the AGI server and the tracker see a change on their next request without a restart."""

from flask import Blueprint

bp = Blueprint("settings", __name__)

from webadmin.settings import callers, imports, views  # noqa: E402,F401
