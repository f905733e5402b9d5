"""Broken and hostile AGI input: a clean failure to the fallback, a log line, and the server keeps serving."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from astertrack.routing import dialplan_vars as v
from tests.agi.conftest import GLOBAL_FALLBACK, recording
from tests.agi.fake_asterisk import FakeAsterisk, run

FALLBACK = f"dial:{GLOBAL_FALLBACK}"


def _env(script="inbound", **overrides):
    return FakeAsterisk.environment(recording("pjsip_fastagi_1"), overrides=overrides, script=script)


def assert_fallback(result):
    got = result.variables
    assert got[v.STATUS] == "FAILED"
    assert got[v.FALLBACK] == FALLBACK
    assert got[v.DIAL] == "" and got[v.QUEUE] == ""
    assert got[v.ROUTED_BY] == "failed"
    assert result.closed_by_server


def assert_still_serving(fake):
    """A normal call right after the bad one gets a real decision."""
    result = run(fake.session(_env(), variables={"CHANNEL(linkedid)": "1.1"}))
    assert result.variables[v.STATUS] == "OK"
    assert result.variables[v.SOURCE] == "google-ads"
    return result


@pytest.fixture
def seeded(seed):
    seed.static_number("+74950000101", "google-ads")
    seed.managers("101")
    seed.commit()


def test_unknown_route_goes_to_the_fallback_and_is_logged(agi, seeded, caplog):
    _, fake = agi
    caplog.set_level(logging.INFO, logger="agi")
    rec = recording("local_fastagi_1")  # the lab's first server called its route "route"

    result = run(fake.session(FakeAsterisk.environment(rec)))

    assert_fallback(result)
    assert "unknown AGI route 'route'" in caplog.text
    assert_still_serving(fake)


def test_environment_without_any_agi_field_fails_cleanly(agi, seeded, caplog):
    _, fake = agi
    caplog.set_level(logging.INFO, logger="agi")

    result = run(fake.session(b"\n"))

    assert_fallback(result)
    assert "unknown AGI route ''" in caplog.text
    assert_still_serving(fake)


def test_missing_caller_and_did_fields_still_connect_the_caller(agi, seeded, session):
    _, fake = agi
    env = [("agi_network_script", "inbound"), ("agi_channel", "PJSIP/trunk-00000009")]

    result = run(fake.session(env))

    assert result.variables[v.STATUS] == "OK"
    assert result.variables[v.SOURCE] == ""
    assert result.variables[v.DIAL] == "PJSIP/101"  # the default rule still finds a free manager


def test_non_utf8_bytes_in_the_environment_are_replaced_not_fatal(agi, seeded, caplog):
    _, fake = agi
    env = FakeAsterisk.encode_environment(_env(agi_calleridname="X"))
    env = env.replace(b"agi_calleridname: X", b"agi_calleridname: \xc8\xe2\xe0\xed \xff\xfe")
    env = env.replace(b"agi_language: en", b"agi_\xff\xfe: junk\nthis line is not a header")

    result = run(fake.session(env, variables={"CHANNEL(linkedid)": "1.1"}))

    assert result.variables[v.STATUS] == "OK"
    assert result.variables[v.DIAL] == "PJSIP/101"
    assert "\ufffd" in result.variables["CALLERID(name)"]
    assert "environment problems" in caplog.text


def test_a_one_megabyte_header_line_is_rejected_cleanly(agi, seeded, caplog):
    _, fake = agi
    caplog.set_level(logging.INFO, logger="agi")
    env = _env(agi_calleridname="A" * (1024 * 1024))

    result = run(fake.session(env))

    assert_fallback(result)
    assert "line longer than 8192 bytes" in caplog.text
    assert_still_serving(fake)


def test_an_endless_environment_is_cut_off(agi, seeded, caplog):
    _, fake = agi
    env = [("agi_network_script", "inbound")] + [(f"agi_x{i}", "y") for i in range(5000)]

    result = run(fake.session(env))

    assert_fallback(result)
    assert "more than 256 environment lines" in caplog.text
    assert_still_serving(fake)


def test_caller_hanging_up_mid_request_is_logged_and_the_server_carries_on(agi, seeded, caplog):
    _, fake = agi
    caplog.set_level(logging.INFO, logger="agi")

    result = run(fake.session(_env(), hangup_after=3))  # drop the socket after 3 commands

    assert not result.closed_by_server
    # what the dialplan would see: CT_STATUS still empty (cleared before the AGI), not OK ->
    # its fallback branch; the batch of CT_* variables never arrived
    assert len(result.commands) == 4
    assert v.STATUS not in result.variables and v.DIAL not in result.variables
    assert_still_serving(fake)
    deadline = time.monotonic() + 5
    while "caller gone" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "caller gone" in caplog.text


def test_inline_hangup_line_ends_the_request_without_a_crash(agi, seeded, caplog):
    _, fake = agi
    caplog.set_level(logging.INFO, logger="agi")

    result = run(fake.session(_env(), hangup_line_at=2))  # before the reply to the UserEvent
    assert len(result.commands) >= 2 and result.variables.get(v.STATUS) != "OK"

    assert_still_serving(fake)
    assert "caller gone" in caplog.text


def test_half_sent_environment_times_out(start_server, db_url, seeded, caplog):
    thread, fake = start_server(db_url, request_timeout="0.5")
    caplog.set_level(logging.INFO, logger="agi")
    with socket.create_connection(thread.address, timeout=5) as sock:
        sock.sendall(b"agi_network_script: inbound\nagi_channel: PJSIP/t-1\n")  # no blank line, then silence
        received = b""
        with sock.makefile("rb") as replies:
            for line in replies:  # answer like Asterisk until the server hangs up
                received += line
                sock.sendall(b"200 result=1\n")
    assert received.startswith(b'EXEC MSet "CT_DIAL=,')
    assert received.rstrip().endswith(b',CT_STATUS=FAILED"')
    assert "no blank line within the request timeout" in caplog.text
    assert_still_serving(fake)


def test_database_down_sends_every_call_to_the_fallback_and_keeps_serving(start_server, caplog):
    _, fake = start_server("postgresql+psycopg://postgres@127.0.0.1:1/unreachable")
    caplog.set_level(logging.INFO, logger="agi")

    first = run(fake.session(_env(), variables={"CHANNEL(linkedid)": "1.1"}))
    second = run(fake.session(_env(), variables={"CHANNEL(linkedid)": "1.2"}))

    assert_fallback(first)
    assert_fallback(second)
    assert "OperationalError" in caplog.text and "sending the call to the fallback" in caplog.text


def test_many_broken_sessions_at_once_do_not_stop_good_ones(agi, seeded):
    _, fake = agi

    async def mix():
        bad = [fake.session(b"garbage\n" * 10 + b"\n") for _ in range(10)]
        cut = [fake.session(_env(), hangup_after=1) for _ in range(10)]
        results = await asyncio.gather(*bad, *cut, return_exceptions=True)
        return results

    results = run(mix())
    assert not [r for r in results if isinstance(r, Exception)]
    assert_still_serving(fake)


def test_next_without_a_call_id_on_the_channel_fails_to_the_fallback(agi, seeded, caplog):
    _, fake = agi
    env = FakeAsterisk.environment(recording("pjsip_fastagi_3"), script="next", args=["NOANSWER"])

    result = run(fake.session(env))  # the channel has no CT_CALL_ID: inbound never ran

    assert_fallback(result)
    assert "MissingCallId" in caplog.text


def test_next_for_a_call_we_never_routed_fails_to_the_fallback(agi, seeded, caplog):
    _, fake = agi
    env = FakeAsterisk.environment(recording("pjsip_fastagi_3"), script="next", args=["NOANSWER"])

    result = run(fake.session(env, variables={v.CALL_ID: "ct-20261123-39732"}))  # the lab's id, not ours

    assert_fallback(result)
    assert "UnknownCall" in caplog.text
    assert_still_serving(fake)


def test_metrics_count_decisions_and_keep_wire_names_out_of_labels(agi, seeded):
    from astertrack.ops import metrics

    def sample(route, result):
        return metrics.REGISTRY.get_sample_value("astertrack_agi_requests_total",
                                                 {"route": route, "result": result}) or 0

    _, fake = agi
    ok_before, unknown_before = sample("inbound", "ok"), sample("unknown", "unknown_route")

    assert_still_serving(fake)
    run(fake.session(_env(script="x" * 40)))

    assert sample("inbound", "ok") == ok_before + 1
    assert sample("unknown", "unknown_route") == unknown_before + 1
    assert sample("x" * 40, "unknown_route") == 0


@pytest.mark.parametrize("inline", [False, True], ids=["threads", "event-loop"])
def test_postgres_connections_killed_under_the_server_are_replaced_without_failing_a_call(
        tmp_path, db_url, seeded, caplog, inline):
    """No pre-ping on PostgreSQL (it costs a round trip per checkout): a dead pooled connection
    is found by the failed statement and the step runs again on a fresh one: in the threads
    by ``run_with_retry``; on the event loop the step is handed to the threads."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from agi.app import AgiApp
    from astertrack.ops import metrics
    from tests.agi.conftest import ServerThread, make_config

    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    app = AgiApp(make_config(tmp_path, db_url, db_inline=inline))  # the daemon's own engines (agi.database)
    assert (app.inline_factory is not None) is inline
    thread = ServerThread(app).start()
    try:
        fake = FakeAsterisk(*thread.address)
        assert_still_serving(fake)
        busy_before = metrics.REGISTRY.get_sample_value("astertrack_agi_inline_busy_total")
        admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            killed = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid() AND application_name = ''"),
                {"db": make_url(db_url).database}).scalar()
        admin.dispose()
        assert killed >= 1

        result = run(fake.session(_env(), variables={"CHANNEL(linkedid)": "1.2"}))

        assert result.variables[v.STATUS] == "OK"
        if inline:
            assert metrics.REGISTRY.get_sample_value("astertrack_agi_inline_busy_total") == busy_before + 1
        else:
            assert "database connection lost" in caplog.text
    finally:
        thread.stop()
