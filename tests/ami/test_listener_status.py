"""The listener records where it stands in ami_listener_status: login, heartbeats, a lost connection,
a refused login, a stop, and a SIGKILL that only a stale heartbeat reveals (real TCP, real database)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from ami_listener.connection import AmiAuthError
from ami_listener.listener import AmiListener
from astertrack.callflow import listener_status as ls
from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import AmiGap, AmiListenerStatus, Base, Call
from tests.ami.fake_ami import FakeAmiServer, capture_body
from tests.ami.fake_ami import Session as Script
from tests.ami.harness import NODE, SECRET, finished_calls, make_config, run_listener
from tests.conftest import RECORDED_ASTERISK, REPO


def status_row(factory) -> AmiListenerStatus | None:
    with factory() as session:
        row = session.get(AmiListenerStatus, NODE)
        if row is not None:
            session.expunge(row)
        return row


async def wait_for(factory, condition, timeout: float = 15.0) -> AmiListenerStatus:
    deadline = time.monotonic() + timeout
    while True:
        row = await asyncio.to_thread(status_row, factory)
        if row is not None and condition(row):
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"status never met the condition; last row: {row and vars(row)}")
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_login_heartbeats_lost_connection_reconnect_and_stop_are_recorded(db_url):
    engine = make_engine(db_url)
    factory = make_session_factory(engine)

    async def scenario():
        server = FakeAmiServer([Script()], secret=SECRET)
        port = await server.start()
        listener = AmiListener(make_config(db_url, port), factory)
        started = dt.datetime.now(dt.UTC)
        task = asyncio.create_task(listener.run())
        try:
            up = await wait_for(factory, lambda r: r.state == ls.LOGGED_IN)
            assert started - dt.timedelta(seconds=1) <= up.since <= dt.datetime.now(dt.UTC)
            assert up.last_error is None
            with factory() as session:
                assert ls.read(session).followed
            # the 2-second reconcile tick renews the heartbeat while the session lasts
            beat = await wait_for(factory, lambda r: r.heartbeat_at > up.heartbeat_at + dt.timedelta(seconds=1),
                                  timeout=6)
            assert (beat.state, beat.since) == (ls.LOGGED_IN, up.since)

            # Asterisk goes away: the session drops and reconnects are refused
            await server.close()
            lost_at = dt.datetime.now(dt.UTC)
            down = await wait_for(factory, lambda r: r.state == ls.DISCONNECTED and r.last_error)
            assert lost_at - dt.timedelta(seconds=1) <= down.since <= dt.datetime.now(dt.UTC)
            assert f"127.0.0.1:{port}" in down.last_error
            with factory() as session:
                status = ls.read(session)
            assert not status.followed and status.down_since == down.since
            assert [(n.node, n.problem) for n in status.down] == [(NODE, ls.DISCONNECTED)]
            # still alive while disconnected: the heartbeat goes on, the outage start stays
            later = await wait_for(factory, lambda r: r.heartbeat_at > down.heartbeat_at + dt.timedelta(seconds=1),
                                   timeout=6)
            assert (later.state, later.since) == (ls.DISCONNECTED, down.since)

            # Asterisk is back on the same port
            again = FakeAmiServer([Script()], secret=SECRET)
            again.server = await asyncio.start_server(again._handle, "127.0.0.1", port)
            back = await wait_for(factory, lambda r: r.state == ls.LOGGED_IN)
            assert back.since > down.since and back.last_error is None
            with factory() as session:
                assert ls.read(session).followed
                assert session.scalar(select(AmiGap.reason).order_by(AmiGap.id.desc()).limit(1)) \
                    == "reconnected after connection loss"
        finally:
            listener.stop()
            await asyncio.wait_for(task, 30)
            await server.close()
            if "again" in locals():
                await again.close()
        stopped = status_row(factory)
        assert stopped.state == ls.STOPPED and stopped.last_error is None
        with factory() as session:
            assert [n.problem for n in ls.read(session).down] == [ls.STOPPED]

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()


def test_a_refused_login_leaves_the_node_stopped_with_the_reason(db_url):
    engine = make_engine(db_url)
    factory = make_session_factory(engine)

    async def scenario():
        server = FakeAmiServer([], secret="the-right-one")
        port = await server.start()
        listener = AmiListener(make_config(db_url, port), factory)
        try:
            with pytest.raises(AmiAuthError):
                await asyncio.wait_for(listener.run(), 20)
        finally:
            await server.close()

    try:
        asyncio.run(scenario())
        row = status_row(factory)
        assert row.state == ls.STOPPED
        assert "AMI authentication failed for user 'astertrack'" in row.last_error
    finally:
        engine.dispose()


def test_a_killed_listener_is_found_by_its_stale_heartbeat_and_its_successor_keeps_the_outage_start(
        db_url, tmp_path):
    """SIGKILL writes nothing: the row still says logged in, but its heartbeat stops.  The next
    listener to start dates the outage from the dead one's last heartbeat."""
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    port = free_port()
    config = tmp_path / "astertrack.conf"
    config.write_text(f"[general]\nnode = {NODE}\n[database]\nurl = {db_url}\n"
                      f"[ami]\nport = {port}\nsecret = {SECRET}\nreconnect_max_delay = 0.5\nmetrics_port = 0\n")
    config.chmod(0o600)

    async def serve_until_logged_in_then_kill() -> AmiListenerStatus:
        server = FakeAmiServer([Script()], secret=SECRET)
        server.server = await asyncio.start_server(server._handle, "127.0.0.1", port)
        proc = subprocess.Popen([sys.executable, "-m", "ami_listener.daemon", "-c", str(config)], cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            up = await wait_for(factory, lambda r: r.state == ls.LOGGED_IN, timeout=30)
            await wait_for(factory, lambda r: r.heartbeat_at > up.heartbeat_at, timeout=6)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            last = status_row(factory)
            await asyncio.sleep(ls.HEARTBEAT_SECONDS + 1)
            assert status_row(factory).heartbeat_at == last.heartbeat_at  # nothing beats any more
            return last
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            await server.close()

    try:
        last = asyncio.run(serve_until_logged_in_then_kill())
        assert last.state == ls.LOGGED_IN  # the row alone still claims a session
        with factory() as session:
            assert ls.read(session, now=last.heartbeat_at + ls.STALE_AFTER).followed
            stale = ls.read(session, now=last.heartbeat_at + ls.STALE_AFTER + dt.timedelta(seconds=1))
        assert not stale.followed
        assert [(n.problem, n.down_since) for n in stale.down] == [(ls.STALE, last.heartbeat_at)]

        # a new listener starts while Asterisk is unreachable: the outage began with the old one's death
        async def restart_unreachable() -> AmiListenerStatus:
            listener = AmiListener(make_config(db_url, free_port()), factory)
            task = asyncio.create_task(listener.run())
            try:
                return await wait_for(factory, lambda r: r.state == ls.DISCONNECTED and r.last_error)
            finally:
                listener.stop()
                await asyncio.wait_for(task, 30)

        down = asyncio.run(restart_unreachable())
        assert down.since == last.heartbeat_at and down.heartbeat_at > last.heartbeat_at
        with factory() as session:
            assert ls.read(session).down_since == last.heartbeat_at
    finally:
        engine.dispose()


def test_a_status_that_cannot_be_written_holds_up_no_call_and_no_stop(tmp_path, caplog):
    """Migration 0008 not applied (or the table gone): calls are still recorded, the listener stops
    at once, and the log says why the admin will show Asterisk as not followed."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    AmiListenerStatus.__table__.drop(engine)
    body = capture_body(RECORDED_ASTERISK / "ami" / "sip_a_answered_101.ami.txt")
    try:
        run = run_listener(url, [Script(stream=body)], lambda s: finished_calls(s) >= 1)
        assert run.elapsed < 10
        with make_session_factory(engine)() as session:
            assert session.scalar(select(Call.outcome)) == "answered"
    finally:
        engine.dispose()
    assert "cannot record the listener's status in ami_listener_status" in caplog.text


def test_forget_node_drops_a_decommissioned_pbx_so_the_banner_stops(db_url, tmp_path):
    from click.testing import CliRunner

    from ami_listener.daemon import main as ami_cli

    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    factory = make_session_factory(engine)
    now = dt.datetime.now(dt.UTC)
    with factory() as s:
        s.add_all([AmiListenerStatus(node="old-pbx", state="stopped", since=now, heartbeat_at=now),
                   AmiListenerStatus(node="pbx1", state="logged_in", since=now, heartbeat_at=now)])
        s.commit()
        assert not ls.read(s, now).followed  # the stopped node keeps the admin's banner up
    conf = tmp_path / "astertrack.conf"
    conf.write_text(f"[database]\nurl = {db_url}\n")
    runner = CliRunner()
    unknown = runner.invoke(ami_cli, ["-c", str(conf), "forget-node", "nope"])
    assert unknown.exit_code != 0 and "known: old-pbx, pbx1" in unknown.output
    done = runner.invoke(ami_cli, ["-c", str(conf), "forget-node", "old-pbx"])
    assert done.exit_code == 0, done.output
    with factory() as s:
        assert [r.node for r in s.scalars(select(AmiListenerStatus))] == ["pbx1"]
        assert ls.read(s, now).followed
    engine.dispose()
