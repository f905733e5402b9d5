"""The API's browsable page, rendered on the server from the served OpenAPI document (so it
cannot drift from it): operations by tag with parameters, bodies, error codes, scope and a curl
example, and the webhooks with their bodies.  Behind login, for admins and supervisors."""

from __future__ import annotations
