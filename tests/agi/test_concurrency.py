"""Simultaneous calls: the atomic reservation never gives one free manager to two calls."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import select

from astertrack.db.models import Call, Manager
from astertrack.routing import dialplan_vars as v
from tests.agi.conftest import recording
from tests.agi.fake_asterisk import FakeAsterisk


async def _burst(fake: FakeAsterisk, count: int):
    rec = recording("pjsip_fastagi_1")
    sessions = []
    for index in range(count):
        env = FakeAsterisk.environment(rec, script="inbound", overrides={
            "agi_uniqueid": f"1795439737.{index}", "agi_callerid": f"7916{index:07d}"})
        sessions.append(fake.session(env, timeout=60))
    return await asyncio.gather(*sessions)


def check_decisions(results, session, managers: int, strategy: str):
    assert len(results) == 50
    assert all(r.variables.get(v.STATUS) == "OK" for r in results), "every call gets a decision"
    chosen = [r.variables[v.DIAL] for r in results if r.variables[v.DIAL]]
    assert len(chosen) == managers, f"{strategy}: {len(chosen)} calls got a manager"
    assert len(set(chosen)) == managers, f"{strategy}: a manager was chosen twice: {Counter(chosen).most_common(3)}"
    fallbacks = [r for r in results if not r.variables[v.DIAL]]
    assert all(r.variables[v.ROUTED_BY] == "fallback" and r.variables[v.FALLBACK] for r in fallbacks)
    session.expire_all()
    holders = [m.reserved_call_uid for m in session.execute(select(Manager)).scalars()]
    assert len(set(holders)) == managers and None not in holders
    calls = session.execute(select(Call)).scalars().all()
    assert len(calls) == 50 and len({c.uniqueid for c in calls}) == 50


def test_fifty_simultaneous_calls_never_share_one_of_ten_free_managers(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    members = seed.managers(*[str(100 + i) for i in range(1, 11)])
    seed.rule("sales", seed.group("sales", members), strategy="round_robin")
    seed.commit()
    _, fake = agi

    results = asyncio.run(_burst(fake, 50))

    check_decisions(results, session, 10, "round_robin")


def test_fifty_simultaneous_calls_with_least_recent_strategy(agi, seed, session):
    seed.static_number("+74950000101", "google-ads")
    members = seed.managers(*[str(200 + i) for i in range(1, 11)])
    seed.rule("sales", seed.group("sales", members), strategy="least_recent")
    seed.commit()
    _, fake = agi

    results = asyncio.run(_burst(fake, 50))

    check_decisions(results, session, 10, "least_recent")


def test_one_caller_on_ten_lines_at_once_gets_one_profile(agi, seed, session):
    from astertrack.db.models import CallerProfile

    seed.static_number("+74950000101", "google-ads")
    seed.managers(*[str(300 + i) for i in range(1, 4)])
    seed.commit()
    _, fake = agi
    rec = recording("pjsip_fastagi_1")

    async def same_caller():
        envs = [FakeAsterisk.environment(rec, script="inbound", overrides={"agi_uniqueid": f"1795439737.{i}"})
                for i in range(10)]
        return await asyncio.gather(*(fake.session(env, timeout=60) for env in envs))

    results = asyncio.run(same_caller())

    assert all(r.variables[v.STATUS] == "OK" for r in results)
    session.expire_all()
    profiles = session.execute(select(CallerProfile)).scalars().all()
    assert len(profiles) == 1 and profiles[0].calls_count == 10
