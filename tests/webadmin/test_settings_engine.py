"""The admin offers and stores exactly what the engine routes: every routing strategy, source-rule
op, destination kind and rule match key of the core, posted through the real forms and then read
by the engine (source matching, the FastAGI router).  A value the core adds without the admin
following makes one of these fail."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from agi.app import AgiApp
from astertrack.db.models import Call, CallerProfile, Manager, ManagerGroup, RoutingRule, Site, Source
from astertrack.db.types import utcnow
from astertrack.dni import allocation, sources
from astertrack.routing import attribution, rules
from astertrack.routing import dialplan_vars as v
from tests.agi.conftest import ServerThread, make_config, recording
from tests.agi.fake_asterisk import FakeAsterisk, run
from tests.webadmin import builder_fields
from webadmin.settings import forms

# One sample per engine value: a KeyError here means the core grew a value the admin was not taught.
DESTINATION_TARGETS = {"dial": "PJSIP/200&PJSIP/201", "queue": "sales", "voicemail": "100@default",
                       "context": "ivr-main"}
MATCH_SAMPLES = {"dids": ["+74952000000"], "source_ids": [1], "source_names": ["Organic"], "utm_campaign": ["brand"],
                 "landing_contains": ["/sale"], "caller_numbers": ["+79161234567"], "caller_tags": ["wholesale"],
                 "vip": True}
# op -> (value, visit that matches, visit that does not)
OP_SAMPLES = {"equals": ("yandex", {"utm_source": "Yandex"}, {"utm_source": "yandex.ru"}),
              "contains": ("ndex", {"utm_source": "yandex"}, {"utm_source": "google"}),
              "prefix": ("yan", {"utm_source": "yandex"}, {"utm_source": "ayandex"}),
              "regex": ("^y.n", {"utm_source": "yandex"}, {"utm_source": "google"}),
              "present": (None, {"utm_source": "anything"}, {}),
              "absent": (None, {}, {"utm_source": "anything"})}
RULE = {"priority": "5", "enabled": "on", "sticky_days": "30", "strategy": "round_robin"}


def test_forms_offer_every_engine_value():
    strategies = [c.value for c in forms.RuleForm.strategy.kwargs["choices"]]
    assert strategies == list(rules.STRATEGIES)
    assert set(rules.STRATEGIES) <= set(forms.STRATEGY_LABELS), "label the new strategy (and translate it)"
    kinds = [c.value for c in forms.SourceForm.kind.kwargs["choices"]]
    assert kinds == list(sources.SOURCE_KINDS) and set(kinds) <= set(forms.SOURCE_KIND_LABELS)
    assert set(rules.DESTINATION_KINDS) == set(DESTINATION_TARGETS)
    assert set(rules.MATCH_KEYS) == set(MATCH_SAMPLES) and set(sources.OPS) == set(OP_SAMPLES)
    policies = [c.value for c in forms.SiteForm.overflow_policy.kwargs["choices"]]
    assert policies == list(allocation.OVERFLOW_POLICIES) and set(policies) <= set(forms.OVERFLOW_POLICY_LABELS)
    models = [c.value for c in forms.SiteForm.attribution_model.kwargs["choices"]]
    assert models == list(attribution.ATTRIBUTION_MODELS) and set(models) <= set(forms.ATTRIBUTION_MODEL_LABELS)


def _group(db, name: str, queue: str | None = None) -> int:
    group = ManagerGroup(name=name, queue_name=queue)
    db.add(group)
    db.commit()
    return group.id


@pytest.mark.parametrize("strategy", rules.STRATEGIES)
def test_every_strategy_is_saved(client, auth, data, db, strategy):
    group = _group(db, "Sales", queue="sales")
    auth.login("admin")
    form = {**RULE, "name": f"by {strategy}", "strategy": strategy, "group_id": str(group)}
    page = client.get("/settings/rules/new").data.decode()
    assert f'value="{strategy}"' in page
    assert auth.post("/settings/rules/new", form, page="/settings/rules/new").status_code == 302
    assert db.scalars(select(RoutingRule.strategy).where(RoutingRule.name == f"by {strategy}")).one() == strategy


def test_a_queue_rule_opens_and_saves_unchanged(client, auth, data, db):
    group = _group(db, "Sales", queue="sales")
    rule = RoutingRule(name="to queue", priority=10, strategy="queue", group_id=group, ring_timeout=15)
    db.add(rule)
    db.commit()
    auth.login("admin")
    page = client.get(f"/settings/rules/{rule.id}").data.decode()
    assert '<option selected value="queue">' in page
    from tests.webadmin.test_settings import shown_form

    form = shown_form(page)
    assert form["strategy"] == "queue"
    assert auth.post(f"/settings/rules/{rule.id}", form, page="/settings/rules/").status_code == 302
    db.rollback()
    assert (db.get(RoutingRule, rule.id).strategy, db.get(RoutingRule, rule.id).ring_timeout) == ("queue", 15)
    assert "Asterisk queue of the group" in client.get("/settings/rules/").data.decode()


def test_the_queue_strategy_needs_a_group_with_a_queue(client, auth, data, db):
    group = _group(db, "No queue")
    auth.login("admin")
    form = {**RULE, "name": "q", "strategy": "queue", "group_id": str(group)}
    response = auth.post("/settings/rules/new", form, page="/settings/rules/new")
    assert response.status_code == 400 and b"needs a group with an Asterisk queue name" in response.data


@pytest.mark.parametrize("kind", rules.DESTINATION_KINDS)
def test_every_destination_kind_is_accepted_as_the_engine_reads_it(client, auth, data, db, kind):
    auth.login("admin")
    text = f"{kind}:{DESTINATION_TARGETS[kind]}"
    form = {**RULE, "name": kind, "after_hours_destination": text, "fallback_destination": text}
    assert auth.post("/settings/rules/new", form, page="/settings/rules/new").status_code == 302
    stored = db.scalars(select(RoutingRule).where(RoutingRule.name == kind)).one()
    assert stored.after_hours_destination == stored.fallback_destination == text
    assert rules.parse_destination(text) == rules.Destination(kind, DESTINATION_TARGETS[kind])


@pytest.mark.parametrize(("typed", "stored"), [("PJSIP/200", "dial:PJSIP/200"), (" context:ivr-main ", "context:ivr-main")])
def test_destinations_are_stored_as_the_engine_reads_them(client, auth, data, db, typed, stored):
    auth.login("admin")
    form = {**RULE, "name": "d", "fallback_destination": typed}
    assert auth.post("/settings/rules/new", form, page="/settings/rules/new").status_code == 302
    assert db.scalars(select(RoutingRule.fallback_destination)).one() == stored


@pytest.mark.parametrize("typed", ["goto:ivr-main,s,1", "goto:ivr-main", "hangup:", "hangup:16", "dial:sales",
                                   "context:ivr main", "context:ivr/x", "queue:sales,,,,30", "voicemail:100@a@b"])
def test_destinations_the_dialplan_cannot_route_are_refused(client, auth, data, db, typed):
    """goto:/hangup: have no branch in [astertrack-fallback]: the engine would Dial() them as a device."""
    auth.login("admin")
    form = {**RULE, "name": "bad", "fallback_destination": typed}
    response = auth.post("/settings/rules/new", form, page="/settings/rules/new")
    assert response.status_code == 400, typed
    assert db.query(RoutingRule).count() == 0


@pytest.mark.parametrize("key", rules.MATCH_KEYS)
def test_every_rule_match_key_is_accepted(client, auth, data, db, key):
    auth.login("admin")
    form = {**RULE, "name": key, **builder_fields.match({key: MATCH_SAMPLES[key]})}
    assert auth.post("/settings/rules/new", form, page="/settings/rules/new").status_code == 302
    assert db.scalars(select(RoutingRule.match)).one() == {key: MATCH_SAMPLES[key]}


@pytest.mark.parametrize("op", sources.OPS)
def test_every_source_rule_op_is_accepted_and_matches_in_the_tracker(client, auth, data, db, op):
    value, matching, other = OP_SAMPLES[op]
    condition = {"field": "utm_source", "op": op} | ({"value": value} if value is not None else {})
    auth.login("admin")
    form = {"site_id": str(data.site), "name": f"by {op}", "kind": "static", "priority": "0", "enabled": "on",
            **builder_fields.conditions([condition])}
    assert auth.post("/settings/sources/new", form, page="/settings/sources/new").status_code == 302
    assert db.scalars(select(Source.match_rules).where(Source.name == f"by {op}")).one() == [condition]
    routing = sources.load_site_routing(db, db.get(Site, data.site).public_key)
    assert f"by {op}" in [s.name for s in routing.sources]  # the tracker reads it, not skips it
    assert sources.route_visit(routing, matching).source.name == f"by {op}"
    chosen = sources.route_visit(routing, other).source
    assert chosen is None or chosen.name != f"by {op}"


def test_a_source_rule_the_tracker_would_skip_is_refused(client, auth, data, db):
    auth.login("admin")
    form = {"site_id": str(data.site), "name": "typo", "kind": "static", "priority": "0",
            **builder_fields.conditions([{"field": "utm_sorce", "op": "equals", "value": "x"}])}
    response = auth.post("/settings/sources/new", form, page="/settings/sources/new")
    assert response.status_code == 400 and b"Choose what to match." in response.data


# ---------------------------------------------------------------- through the FastAGI router


@pytest.fixture
def router(db_url, tmp_path):
    thread = ServerThread(AgiApp(make_config(tmp_path, db_url))).start()
    yield FakeAsterisk(*thread.address)
    thread.stop()


def call(fake: FakeAsterisk, did: str = "74952000000") -> dict[str, str]:
    """A recorded inbound session of +79161234567 (Ivan) to ``did`` (the seed's Organic number)."""
    rec = recording("pjsip_fastagi_1")
    env = FakeAsterisk.environment(rec, overrides={"agi_extension": did}, script="inbound")
    return run(fake.session(env, variables={"CHANNEL(linkedid)": rec.env_dict.get("agi_uniqueid", "")})).variables


def _desk(db, name: str, endpoint: str) -> int:
    manager = Manager(name=name, endpoint=endpoint, device_state="NOT_INUSE")
    group = ManagerGroup(name=name, managers=[manager])
    db.add(group)
    db.commit()
    return group.id


def test_vip_and_tags_set_in_the_admin_route_the_callers_next_calls(router, client, auth, data, db):
    general, vip, wholesale = _desk(db, "general", "PJSIP/301"), _desk(db, "vip", "PJSIP/302"), \
        _desk(db, "wholesale", "PJSIP/303")
    auth.login("admin")
    for name, priority, group, match in [("general", 100, general, {}), ("vip", 10, vip, {"vip": True}),
                                         ("wholesale", 20, wholesale, {"caller_tags": ["Wholesale"]})]:
        form = {**RULE, "name": name, "priority": str(priority), "group_id": str(group),
                **builder_fields.match(match)}
        assert auth.post("/settings/rules/new", form, page="/settings/rules/new").status_code == 302

    first = call(router)
    assert (first[v.ROUTED_BY], first[v.DIAL]) == ("general", "PJSIP/301")
    call_id = db.scalars(select(Call.id).where(Call.call_uid == first[v.CALL_ID])).one()
    profile = db.scalars(select(CallerProfile).where(CallerProfile.number == "+79161234567",
                                                     CallerProfile.site_id == data.site)).one()
    card = client.get(f"/calls/{call_id}").data.decode()
    edit = f"/settings/callers/{profile.id}?back_call={call_id}"
    assert edit.replace("&", "&amp;") in card  # the call card leads to the caller's profile

    form = {"name": "Ivan Petrov", "is_vip": "y", "tags": "wholesale\n<b>"}
    response = auth.post(edit, form, page=edit)
    assert response.status_code == 400 and b"&lt;b&gt;" in response.data  # refused, and escaped when shown
    form["tags"] = "wholesale, WHOLESALE\nregular"
    response = auth.post(edit, form, page=edit)
    assert response.status_code == 302 and response.location.endswith(f"/calls/{call_id}")
    db.rollback()  # end the test session's read transaction: see the admin's commit
    assert (profile.is_vip, profile.tags) == (True, ["wholesale", "regular"])
    assert 'id="caller-marks"><span class="tag">VIP</span>' in client.get(f"/calls/{call_id}").data.decode()

    second = call(router)
    assert (second[v.ROUTED_BY], second[v.DIAL]) == ("vip", "PJSIP/302")

    assert auth.post(edit, {"name": "Ivan Petrov", "tags": "wholesale"}, page=edit).status_code == 302  # VIP off
    third = call(router)
    assert (third[v.ROUTED_BY], third[v.DIAL]) == ("wholesale", "PJSIP/303")
    listing = client.get("/settings/callers/?q=916").data.decode()
    assert f"/settings/callers/{profile.id}" in listing and "wholesale" in listing


def test_a_context_destination_set_in_the_admin_reaches_the_dialplan(router, client, auth, data, db):
    today = utcnow().astimezone(dt.timezone(dt.timedelta(hours=3))).date().isoformat()  # the site is in Moscow
    auth.login("admin")
    form = {**RULE, "name": "closed today", "site_id": str(data.site), "group_id": str(_desk(db, "desk", "PJSIP/301")),
            **builder_fields.hours(always=True, holidays=[today]), "after_hours_destination": "context:ivr-main"}
    assert auth.post("/settings/rules/new", form, page="/settings/rules/new").status_code == 302

    got = call(router)
    assert (got[v.ROUTED_BY], got[v.FALLBACK], got[v.DIAL]) == ("after_hours", "context:ivr-main", "")


def test_caller_pages_are_for_admins_only(client, auth, data, db):
    profile = CallerProfile(site_id=data.site, number="+79160000009", calls_count=1)
    db.add(profile)
    db.commit()
    auth.login("super")
    assert client.get("/settings/callers/").status_code == 403
    assert client.get(f"/settings/callers/{profile.id}").status_code == 403
    assert auth.post(f"/settings/callers/{profile.id}", {"is_vip": "y"}).status_code == 403
    db.rollback()
    assert db.get(CallerProfile, profile.id).is_vip is False
    assert b"VIP and tags" not in client.get(f"/calls/{data.answered}").data
