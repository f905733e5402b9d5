"""The JSON API for CRMs and integrations (``/api/v1``, grown into the full REST API of issue #23),
and the admin page of the tokens it accepts.

API requests carry ``Authorization: Bearer <token>`` and nothing else: no cookie, no CSRF token,
no login; every answer is JSON, errors as ``{"error": {"code": ..., "message": ...}}``.
"""

from flask import Blueprint

from webadmin.security import csrf

bp = Blueprint("api", __name__)
csrf.exempt(bp)  # a bearer token, not a cookie, authenticates: there is no session to forge requests with
tokens_bp = Blueprint("api_tokens", __name__)

from webadmin.api import calls, catalog, chats, docs, leads, openapi, sessions, tokens, webhooks  # noqa: E402,F401
