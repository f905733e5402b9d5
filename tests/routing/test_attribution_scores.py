"""Confidence of a grace-period attribution (pure)."""

from __future__ import annotations

from astertrack.routing.attribution import GRACE_BEST, GRACE_WORST, grace_confidence


def test_confidence_falls_with_time_since_release():
    assert grace_confidence(0, 900, 1) == GRACE_BEST
    assert grace_confidence(900, 900, 1) == GRACE_WORST
    assert GRACE_WORST < grace_confidence(450, 900, 1) < GRACE_BEST
    assert grace_confidence(5000, 900, 1) == GRACE_WORST


def test_confidence_drops_when_several_visits_released_the_number():
    assert grace_confidence(60, 900, 2) < grace_confidence(60, 900, 1)
    assert grace_confidence(60, 900, 1) < 1.0


def test_zero_grace_period():
    assert grace_confidence(0, 0, 1) == GRACE_WORST
