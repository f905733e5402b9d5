"""schemathesis over the whole served OpenAPI document, on SQLite and PostgreSQL: every operation
called with generated valid input (a write token of every site, against seeded calls, leads,
visits, website chats and a webhook subscription with a delivery) answers without a server error, with a status
the document lists and a body its own schema accepts.  Loading the document also proves it is
OpenAPI 3.1 that a tool reads.  Bounded and deterministic: 25 examples per operation, derandomized."""

from __future__ import annotations

import collections

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from astertrack.db.models import WebhookOutbox
from astertrack.integrations import api_tokens, subscriptions
from tests.webadmin.chat_data import make_chats
from tests.webadmin.leads_data import make_leads

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def write_token(db, data):
    make_leads(db, data)
    make_chats(db, data)
    subscription, _secret = subscriptions.create(db, "http://127.0.0.1:9/hook", ["call.finished", "lead.updated"])
    db.add(WebhookOutbox(subscription_id=subscription.id, event="call.finished", call_id=data.answered,
                         payload={"event": "call.finished", "call_id": data.answered}))
    plain = api_tokens.create(db, "fuzz", None, "write")[1]
    db.commit()
    return plain


def test_every_operation_keeps_its_own_contract(app, write_token):
    # schemathesis.pytest.from_fixture needs a pytest older than ours (9.x): the operations are run
    # here one by one, each as its own hypothesis test, and every failure is reported together.
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE], deterministic=True)
    headers = {"Authorization": f"Bearer {write_token}"}
    failures, operations, statuses = [], 0, collections.defaultdict(set)
    # archiving last, so the other operations on a subscription meet a live one
    for operation in sorted((result.ok() for result in schema.get_all_operations()), key=lambda op: op.method.upper() == "DELETE"):
        operations += 1

        seen = statuses[operation.label]

        @settings(max_examples=25, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(case=operation.as_strategy())
        def run(case):
            seen.add(case.call_and_validate(headers=headers, checks=CHECKS).status_code)  # noqa: B023 - run at once

        try:
            run()
        except Exception as error:  # noqa: BLE001 - collected, reported below with the operation
            failures.append(f"{operation.label}: {error}")
    assert operations >= 20
    print(dict(statuses))
    # the generated input reaches the operations' success paths, not only their refusals
    succeeded = [label for label, seen in statuses.items() if seen & {200, 201}]
    assert len(succeeded) >= operations - 4, dict(statuses)
    assert not failures, "\n\n".join(failures)
