"""Simulation fixtures: the AGI's real server (tests/agi) for the parity test."""

from tests.agi.conftest import start_server  # noqa: F401  (the fixture, reused)
