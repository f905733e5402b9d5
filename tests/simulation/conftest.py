"""Simulation fixtures: the AGI's real server (tests/agi) for the parity test, the admin app (tests/webadmin)
for the "what if" page."""

from tests.agi.conftest import start_server  # noqa: F401  (the fixtures, reused)
from tests.webadmin.conftest import app, auth, client, data, db, recordings_dir  # noqa: F401
