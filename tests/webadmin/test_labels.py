"""Labels: every code of the core's vocabularies has one, in English and Russian; hang-up causes
read as people say them; durations are h:mm:ss; every settings column has a header."""

from __future__ import annotations

import pytest

from astertrack.audit import log as audit
from astertrack.callflow import outcomes
from astertrack.callflow.state_machine import _EXTENSION_STATES
from astertrack.db.models import Manager
from astertrack.dni import allocation, sources
from astertrack.routing import attribution, rules
from webadmin import security
from webadmin.filters import duration
from webadmin.labels import COLUMNS, VOCABULARIES, column_label, hangup_cause_label, label_for
from webadmin.settings.crud import ENTITIES

CORE_VOCABULARIES = {
    "outcome": list(outcomes.Outcome), "missed_reason": list(outcomes.MissedReason),
    "hangup_side": list(outcomes.HangupSide), "strategy": rules.STRATEGIES, "kind": sources.SOURCE_KINDS,
    "attribution_model": attribution.ATTRIBUTION_MODELS, "overflow_policy": allocation.OVERFLOW_POLICIES,
    "role": security.ROLES, "action": audit.ACTIONS,
    "device_state": [*_EXTENSION_STATES.values(), *rules.FREE_STATES, Manager.__table__.c.device_state.default.arg],
    "attribution_kind": [attribution.UNKNOWN.kind],
}


@pytest.mark.parametrize("vocabulary", sorted(CORE_VOCABULARIES))
def test_every_core_code_has_a_label(vocabulary):
    missing = [code for code in CORE_VOCABULARIES[vocabulary] if code not in VOCABULARIES[vocabulary]]
    assert missing == []


def test_every_settings_column_has_a_header():
    assert [c for e in ENTITIES.values() for c in e.columns if c not in COLUMNS] == []


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "—"), (0, "0:00:00"), (8, "0:00:08"), (128, "0:02:08"), (59.6, "0:01:00"), (3725, "1:02:05"),
    (8753.3 * 60, "145:53:18"), (-5, "-0:00:05")])
def test_durations_are_hours_minutes_seconds(seconds, shown):
    assert duration(seconds) == shown


def test_labels_in_both_languages(app):
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert label_for("NOT_INUSE", "device_state") == "free"
        assert label_for("queue_abandon", "missed_reason") == "caller left the queue"
        assert label_for("first_touch", "attribution_model") == "first touch"
        assert label_for("Anna", "device_state") == "Anna"  # no label: shown as it is
        assert label_for(None, "outcome") == ""
        assert column_label("site_id") == "Site"
        assert column_label("new_thing_id") == "New thing"  # never the raw name
        assert hangup_cause_label(16) == "normal hang-up"
        assert hangup_cause_label(None, "User busy") == hangup_cause_label(17) == "line busy"
        assert hangup_cause_label(99) == "cause 99"
        assert hangup_cause_label(None, "Something new") == "Something new"
        assert hangup_cause_label(None, None) == ""
    with app.test_request_context(headers={"Accept-Language": "ru"}):
        for vocabulary, labels in VOCABULARIES.items():
            for code in labels:
                text = label_for(code, vocabulary)
                assert text and not any("a" <= ch.lower() <= "z" for ch in text.replace("Asterisk", "")
                                        .replace("CDR", "").replace("AMI", "")), (vocabulary, code, text)
        assert label_for("NOT_INUSE", "device_state") == "свободен"
        assert hangup_cause_label(19) == "нет ответа"
        assert hangup_cause_label(42) != "switching equipment congestion"
        assert hangup_cause_label(250) == "причина 250"
        assert all(not column_label(c).isascii() for c in COLUMNS)
