"""Every AGI route; importing this package registers them (see ``agi.registry``)."""

from agi.routes import inbound, next_candidate, ping  # noqa: F401
