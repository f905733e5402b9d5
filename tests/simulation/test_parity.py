"""The core product is the real apps' code path: one scenario through both, the same visit for every call.

The same traffic runs twice on the test database (each run its own site, numbers and fallback):
once through ``CoreProduct``, once through the real tracker WSGI app (its test client) and the
real FastAGI server with the fake Asterisk placing each call, both apps on the simulated clock.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select

from astertrack.db.models import Call, Site, Source, VisitorSession
from astertrack.dni import allocation
from astertrack.routing import dialplan_vars as v
from astertrack.samples.factories import add_group, add_managers, add_rule
from astertrack.simulation.generate import DEFAULT_START, generate
from astertrack.simulation.model import ProductSettings, TrafficModel
from astertrack.simulation.product import Attributed, CoreProduct, Shown
from astertrack.simulation.run import run
from astertrack.simulation.score import score
from astertrack.simulation.site import populate
from tests.agi.conftest import recording
from tests.agi.fake_asterisk import FakeAsterisk
from tests.agi.fake_asterisk import run as run_async
from tests.tracker.conftest import tracker_config
from tracker import create_app

ORIGIN = "http://127.0.0.1"


class AppsProduct:
    """The product as a browser and Asterisk reach it: the tracker's endpoints, the AGI's inbound route."""

    def __init__(self, client, fake: FakeAsterisk, site_key: str, session_factory):
        self.client, self.fake, self.key, self.factory = client, fake, site_key, session_factory

    def _post(self, path: str, body: dict, user_agent: str | None = None):
        headers = {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"}
        if user_agent:
            headers["User-Agent"] = user_agent
        response = self.client.post(path, data=json.dumps({"k": self.key, **body}), headers=headers)
        assert response.status_code in (200, 204), response.data
        return response.get_json(silent=True)

    def start(self, now, visit, sid, new_visitor) -> Shown:
        body = self._post("/v/start", {**visit, "sid": sid, "new": new_visitor, "interacted": True},
                          user_agent=visit.get("user_agent"))
        return Shown(body["sid"], body["number"])

    def ping(self, now, sid) -> Shown:
        body = self._post("/v/ping", {"sid": sid, "interacted": True})
        return Shown(body.get("sid", sid), body.get("number"), live=body["live"])

    def leave(self, now, sid) -> None:
        self._post("/v/leave", {"sid": sid})

    def call(self, now, did, caller) -> Attributed:
        rec = recording("pjsip_fastagi_1")
        digits = (did or "").lstrip("+")
        env = FakeAsterisk.environment(rec, script="inbound", overrides={
            "agi_extension": digits, "agi_dnid": digits, "agi_callerid": caller.lstrip("+")})
        variables = run_async(self.fake.session(env, variables={"CHANNEL(linkedid)": "sim"})).variables
        with self.factory() as session:
            row = session.execute(select(Call).where(Call.call_uid == variables[v.CALL_ID])).scalar_one()
            public_id = session.scalar(select(VisitorSession.public_id).where(VisitorSession.id == row.session_id))
            source = session.scalar(select(Source.name).where(Source.id == row.source_id))
            return Attributed(public_id, source, float(row.attribution_confidence or 0.0),
                              row.attribution_reason, row.attribution_kind)

    def sweep(self, now) -> None:  # the tracker's maintenance thread, off in tests: its core call
        with self.factory() as session:
            allocation.release_expired(session, now)
            session.commit()


def test_the_core_product_and_the_real_tracker_and_agi_attribute_every_call_to_the_same_visit(
        db_url, engine, session, session_factory, start_server):
    # a busy morning on a small pool: holds, overflows to the fallback, grace, repeat callers
    model = TrafficModel(visits_per_day=500, caller_share=0.35, call_during_share=0.5, call_after_share=0.4,
                         written_down_days=0.02, repeat_caller_share=0.3, repeat_after_days=0.01,
                         return_visit_share=0.0)
    settings = ProductSettings(pool_size=3)
    stream = generate(model, settings, days=1 / 12, seed=3, start=DEFAULT_START + dt.timedelta(hours=10))
    core_site = populate(session, model, settings, first_number="+74955550000", fallback_number="+74955559990")
    apps_site = populate(session, model, settings, first_number="+74955551000", fallback_number="+74955559991")
    group = add_group(session, "all", add_managers(session, ["101"]))
    for site_id in (core_site.site_id, apps_site.site_id):
        add_rule(session, f"all {site_id}", group, site=session.get(Site, site_id))
    session.commit()

    core = CoreProduct(engine, core_site.site_id, settings.release_grace_seconds)
    try:
        core_run = run(core, stream, settings, frozenset(core_site.numbers))
    finally:
        core.close()

    now = [stream.start]
    tracker = create_app(tracker_config(db_url), session_factory=session_factory)
    tracker.extensions["astertrack_tracker"]["api"].clock = lambda: now[0]
    server, fake = start_server(db_url)
    server.app.clock = lambda: now[0]
    apps = AppsProduct(tracker.test_client(), fake, apps_site.public_key, session_factory)
    apps_run = run(apps, stream, settings, frozenset(apps_site.numbers), clock=lambda at: now.__setitem__(0, at))

    def visits(result):
        owner = {sid: visit for visit, sids in result.sessions.items() for sid in sids}
        return [(o.call, owner.get(o.attributed.session), o.attributed.source, o.attributed.reason,
                 round(o.attributed.confidence, 3)) for o in result.results]

    assert len(core_run.results) == len(stream.calls) >= 15
    assert visits(apps_run) == visits(core_run)
    reasons = {o.attributed.reason for o in core_run.results}
    assert {"held_now", "repeat_first_touch"} <= reasons and len(reasons) >= 3  # the scenario has contention
    assert score(stream, apps_run).as_dict() == score(stream, core_run).as_dict()
