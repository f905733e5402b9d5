"""The process-per-call script makes the same decisions as the FastAGI server.

The script runs as a real subprocess speaking AGI on stdin/stdout, exactly as Asterisk
starts it for ``AGI(astertrack-agi-script,inbound)``; the fake Asterisk plays the same
recorded sessions to it and to the server, from the same database state.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, update

from astertrack.db.models import Call, CallerProfile, Manager, RoutingRule
from astertrack.routing import dialplan_vars as v
from tests.agi.conftest import GLOBAL_FALLBACK, recording
from tests.agi.fake_asterisk import FakeAsterisk

SCRIPT = Path(sys.executable).with_name("astertrack-agi-script")
# Differ per call by design (fresh ids); everything else must match.
PER_CALL = {v.CALL_ID, v.RECORDING}


def classic_environment(rec, route: str, args: list[str]):
    """What Asterisk sends a classic AGI script: no agi_network_*, route as the first argument."""
    env = [(k, val) for k, val in rec.env if not k.startswith(("agi_network", "agi_arg_"))]
    env = [(k, "/usr/share/asterisk/agi-bin/astertrack-agi-script" if k == "agi_request" else val) for k, val in env]
    return env + [(f"agi_arg_{i}", a) for i, a in enumerate([route] + args, start=1)]


async def run_script(config_path: Path, env, variables, device_states):
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "ASTERTRACK_CONFIG": str(config_path)})
    result = await asyncio.wait_for(FakeAsterisk().converse(proc.stdout, proc.stdin, env, variables, device_states), 60)
    proc.stdin.close()
    stderr = await proc.stderr.read()
    assert await proc.wait() == 0, stderr.decode()
    return result, stderr.decode()


def reset(session):
    """Forget what the previous run did so both runs start from the same state."""
    session.execute(delete(Call))
    session.execute(delete(CallerProfile))
    session.execute(update(Manager).values(reserved_until=None, reserved_call_uid=None, last_routed_at=None))
    session.execute(update(RoutingRule).values(rr_cursor=0))
    session.commit()


def comparable(result):
    return {k: val for k, val in result.variables.items() if k not in PER_CALL}


@pytest.fixture
def script_config(tmp_path, db_url):
    path = tmp_path / "script.conf"
    path.write_text(f"[database]\nurl = {db_url}\n\n[agi]\nfallback_dial = {GLOBAL_FALLBACK}\n\n"
                    "[general]\nnode = pbx-test\nlog_level = WARNING\n")
    return path


SCENARIOS = [
    ("static number, free manager", "pjsip_fastagi_1", "inbound", [], {}),
    ("ring-all group", "pjsip_fastagi_8", "inbound", [], {}),
    ("queue", "pjsip_fastagi_9", "inbound", [], {}),
    ("everyone busy", "pjsip_fastagi_1", "inbound", [], {"PJSIP/101": "INUSE", "PJSIP/102": "BUSY"}),
    ("unknown DID", "pjsip_fastagi_7", "inbound", [], {}),
]


def test_script_and_fastagi_server_decide_the_same(agi, seed, session, script_config):
    seed.static_number("+74950000101", "google-ads")
    seed.static_number("+74950000300", "billboard")
    seed.static_number("+74950000200", "2gis")
    m101, m102 = seed.managers("101", "102")
    seed.rule("billboard", seed.group("floor", [m101, m102]), strategy="ring_all", match={"dids": ["+74950000300"]},
              priority=10)
    seed.rule("queue", seed.group("sales", [m101, m102], queue_name="sales"), strategy="queue",
              match={"dids": ["+74950000200"]}, priority=20, ring_timeout=15)
    seed.rule("main", seed.group("main", [m101, m102]), fallback_destination="voicemail:100@default")
    seed.commit()
    _, fake = agi

    for label, name, route, args, states in SCENARIOS:
        rec = recording(name)
        variables = {"CHANNEL(linkedid)": rec.env_dict["agi_uniqueid"]}
        reset(session)
        served = asyncio.run(fake.session(FakeAsterisk.environment(rec, script=route, args=args),
                                          variables=variables, device_states=states))
        reset(session)
        scripted, stderr = asyncio.run(run_script(script_config, classic_environment(rec, route, args),
                                                  variables, states))

        assert served.variables[v.STATUS] == "OK", label
        assert comparable(scripted) == comparable(served), label
        assert scripted.device_queries == served.device_queries, label
        event_s, event_f = scripted.route_event() or {}, served.route_event() or {}
        assert {k: x for k, x in event_s.items() if k not in ("call_id", "recording")} == \
            {k: x for k, x in event_f.items() if k not in ("call_id", "recording")}, label


def test_script_failure_policy_matches_the_server(tmp_path, start_server):
    down = "postgresql+psycopg://postgres@127.0.0.1:1/unreachable"
    path = tmp_path / "down.conf"
    path.write_text(f"[database]\nurl = {down}\n\n[agi]\nfallback_dial = {GLOBAL_FALLBACK}\n")
    _, fake = start_server(down)
    rec = recording("pjsip_fastagi_1")

    served = asyncio.run(fake.session(FakeAsterisk.environment(rec, script="inbound")))
    scripted, stderr = asyncio.run(run_script(path, classic_environment(rec, "inbound", []), {}, {}))

    assert scripted.variables == served.variables
    assert scripted.variables[v.STATUS] == "FAILED"
    assert "sending the call to the fallback" in stderr
