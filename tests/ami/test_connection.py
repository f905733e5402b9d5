"""Connection life: reconnect and resync, calls that end unseen, a refused login, a dead peer."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session as OrmSession

from ami_listener.rebuild import rebuild
from astertrack.callflow.state_machine import CallStateMachine
from astertrack.db.models import AmiGap, Call
from astertrack.samples.processes import spawn, stop_process
from tests.ami.fake_ami import FakeAmiServer, alive_channels, capture_body, split_blocks
from tests.ami.fake_ami import Session as Script
from tests.ami.harness import NODE, finished_calls, run_listener
from tests.conftest import RECORDED_ASTERISK, REPO

AMI_DIR = RECORDED_ASTERISK / "ami"


def split_after(capture: str, *needles: bytes) -> tuple[bytes, bytes]:
    """Cut a recorded stream right after the first message containing every needle."""
    blocks = split_blocks(capture_body(AMI_DIR / f"{capture}.ami.txt"))
    for index, block in enumerate(blocks):
        if all(n in block for n in needles):
            return b"".join(blocks[:index + 1]), b"".join(blocks[index + 1:])
    raise AssertionError(f"no message with {needles} in {capture}")


def test_disconnect_mid_call_then_resync_still_records_the_call(session_factory, db_url):
    """The session drops while the caller talks to 101; after the reconnect Asterisk still lists
    the channels, so nothing is closed, and the rest of the call completes the record."""
    head, tail = split_after("pjsip_g_queue_answered", b"Event: BridgeEnter", b"Channel: PJSIP/trunk")
    scripts = [Script(stream=head, close_after=True), Script(stream=tail, live_channels=alive_channels(head))]
    run = run_listener(db_url, scripts, lambda s: finished_calls(s) >= 1)
    assert run.server.logins == 2
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert session.scalar(select(func.count()).select_from(Call)) == 1
        assert (call.outcome, call.answered_by, call.closed_by) == ("answered", "PJSIP/101", "events")
        assert call.wait_seconds == pytest.approx(3.0, abs=1) and call.talk_seconds == pytest.approx(5.0, abs=1)
        gaps = session.scalars(select(AmiGap).order_by(AmiGap.id)).all()
        assert [g.reason for g in gaps] == ["listener start", "reconnected after connection loss"]
        assert gaps[1].started_at <= gaps[1].ended_at


def test_call_that_ended_during_the_gap_is_closed_by_the_sweeper_and_marked(session_factory, db_url):
    head, _lost = split_after("pjsip_a_answered_101", b"Event: BridgeEnter", b"Channel: PJSIP/trunk")
    scripts = [Script(stream=head, close_after=True), Script(stream=b"", live_channels=[])]
    run_listener(db_url, scripts, lambda s: finished_calls(s) >= 1)
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert call.state == "finished" and call.closed_by == "sweeper"
        assert call.outcome == "answered" and call.answered_by == "PJSIP/101"
        assert call.wait_seconds == pytest.approx(3.0, abs=1)
        assert call.talk_seconds < 1  # the unseen end is not stretched to the reconnect time
        before = (call.outcome, call.closed_by, call.wait_seconds, call.talk_seconds, call.ended_at)
    # the synthetic "channel gone" events are stored too, so a rebuild reproduces the sweeper's close
    report = rebuild(session_factory, NODE, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), CallStateMachine)
    assert (report.rebuilt, report.changed, report.incomplete) == (1, 0, 0)
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.outcome, call.closed_by, call.wait_seconds, call.talk_seconds, call.ended_at) == before


def test_ringing_call_that_ended_during_the_gap_is_missed_and_marked(session_factory, db_url):
    head, _lost = split_after("sip_d_caller_hangup_ringing", b"Event: DialBegin")
    run_listener(db_url, [Script(stream=head, close_after=True), Script()], lambda s: finished_calls(s) >= 1)
    with session_factory() as session:
        call = session.scalar(select(Call))
        assert (call.state, call.closed_by, call.outcome) == ("finished", "sweeper", "missed")
        assert call.answered_by is None


def test_rows_left_in_progress_by_an_earlier_run_are_swept_at_login(session_factory, db_url):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    with session_factory() as session:
        session.add(Call(call_uid="left-over", node=NODE, linkedid="1700000000.1", state="up", started_at=old,
                         answered_at=old + dt.timedelta(seconds=5), answered_by="PJSIP/101"))
        session.add(Call(call_uid="other-node", node="pbx-other", linkedid="1700000000.2", state="up",
                         started_at=old))
        session.commit()
    run_listener(db_url, [Script()], lambda s: s.scalar(select(Call).where(Call.call_uid == "left-over"))
                 .state == "finished")
    with session_factory() as session:
        left = session.scalar(select(Call).where(Call.call_uid == "left-over"))
        assert (left.closed_by, left.outcome) == ("sweeper", "answered")
        other = session.scalar(select(Call).where(Call.call_uid == "other-node"))
        assert other.state == "up"  # another PBX's calls are not ours to close


def test_dead_peer_without_pong_is_detected_and_reconnected(session_factory, db_url):
    async def scenario():
        server = FakeAmiServer([Script(), Script()], secret="s3cret", answer_pings=False)
        port = await server.start()
        from ami_listener.listener import AmiListener
        from astertrack.db.engine import make_engine, make_session_factory
        from tests.ami.harness import make_config

        engine = make_engine(db_url)
        listener = AmiListener(make_config(db_url, port, ping_interval=0.2, pong_timeout=0.3),
                               make_session_factory(engine))
        task = asyncio.create_task(listener.run())
        deadline = time.monotonic() + 10
        while server.logins < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        listener.stop()
        await asyncio.wait_for(task, 10)
        await server.close()
        engine.dispose()
        return server

    server = asyncio.run(scenario())
    assert server.logins >= 2
    assert any(a.get("Action") == "Ping" for a in server.actions)


class _ServerThread:
    """The fake server on its own loop, for tests that run the daemon as a subprocess."""

    def __init__(self, server: FakeAmiServer):
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.start())
        self.ready.set()
        self.loop.run_forever()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(5)
        return self.server

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_wrong_secret_exits_non_zero_with_a_clear_error_and_no_retry_loop(tmp_path):
    with _ServerThread(FakeAmiServer([], secret="the-right-one")) as server:
        config = tmp_path / "astertrack.conf"
        config.write_text(f"[general]\nnode = {NODE}\n[database]\nurl = sqlite:///{tmp_path / 'db.sqlite'}\n"
                          f"[ami]\nport = {server.port}\nsecret = a-wrong-one\nreconnect_max_delay = 0.2\n"
                          f"metrics_port = 0\n")
        config.chmod(0o600)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "ami_listener.daemon", "-c", str(config)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=30)
        elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert "AMI authentication failed for user 'astertrack'" in proc.stderr
    assert server.failed_logins == 1 and server.connections == 1  # no silent reconnect loop
    assert elapsed < 15


def test_unreachable_asterisk_is_retried_not_fatal(session_factory, db_url):
    """Connection refused is a transient failure: the listener keeps trying and logs in later."""
    async def scenario():
        import socket

        from ami_listener.listener import AmiListener
        from astertrack.db.engine import make_engine, make_session_factory
        from tests.ami.harness import make_config

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        engine = make_engine(db_url)
        listener = AmiListener(make_config(db_url, port), make_session_factory(engine))
        task = asyncio.create_task(listener.run())
        await asyncio.sleep(0.8)  # a few refused attempts
        assert not task.done()
        server = FakeAmiServer([Script()], secret="s3cret")
        server.server = await asyncio.start_server(server._handle, "127.0.0.1", port)
        deadline = time.monotonic() + 10
        while server.logins < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        listener.stop()
        await asyncio.wait_for(task, 10)
        await server.close()
        engine.dispose()
        return server

    assert asyncio.run(scenario()).logins == 1


def test_daemon_records_a_call_serves_health_and_stops_cleanly_on_sigterm(tmp_path):
    import json
    import signal
    import socket
    import urllib.request

    from astertrack.db.engine import make_engine
    from astertrack.db.models import Base

    db = tmp_path / "db.sqlite"
    engine = make_engine(f"sqlite:///{db}")
    Base.metadata.create_all(engine)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    body = capture_body(AMI_DIR / "sip_a_answered_101.ami.txt")
    with _ServerThread(FakeAmiServer([Script(stream=body)], secret="s3cret")) as server:
        config = tmp_path / "astertrack.conf"
        config.write_text(f"[general]\nnode = {NODE}\n[database]\nurl = sqlite:///{db}\n"
                          f"[ami]\nport = {server.port}\nsecret = s3cret\nmetrics_port = {metrics_port}\n")
        config.chmod(0o600)
        proc = spawn([sys.executable, "-m", "ami_listener.daemon", "-c", str(config)], cwd=REPO,
                     env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                with OrmSession(engine) as session:
                    if session.scalar(select(Call).where(Call.state == "finished")):
                        break
                time.sleep(0.1)
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=5) as reply:
                health = json.loads(reply.read())
            assert health["checks"]["ami"]["ok"] and health["checks"]["database"]["ok"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            stop_process(proc, 10)
    with OrmSession(engine) as session:
        call = session.scalar(select(Call))
        assert (call.call_uid, call.outcome, call.answered_by) == ("ct-20261123-38302", "answered", "SIP/101")
    engine.dispose()


def test_listener_restart_mid_call_adopts_the_call_and_finishes_the_agi_row(session_factory, db_url):
    """The daemon restarts while a caller talks: the new process learns the live channels from
    CoreShowChannels, follows them to the end and completes the same row (no duplicate)."""
    head, tail = split_after("sip_g_queue_answered", b"Event: BridgeEnter", b"Channel: SIP/trunk")
    run_listener(db_url, [Script(stream=head)],
                 lambda s: s.scalar(select(Call.state)) == "up")
    with session_factory() as session:
        answered_at = session.scalar(select(Call.answered_at))
    # a brand-new listener process: empty memory, same database
    run_listener(db_url, [Script(stream=tail, live_channels=alive_channels(head))],
                 lambda s: finished_calls(s) >= 1)
    with session_factory() as session:
        calls = session.scalars(select(Call)).all()
        assert len(calls) == 1
        call = calls[0]
        assert (call.call_uid, call.state, call.closed_by) == ("ct-20261123-38308", "finished", "events")
        assert (call.outcome, call.answered_by) == ("answered", "SIP/101")
        assert call.answered_at == answered_at  # learnt before the restart, kept
        assert call.hangup_side == "caller"


def test_internal_call_in_progress_at_start_is_not_recorded(session_factory, db_url):
    head, tail = split_after("pjsip_z_device_states", b"Event: Newstate", b"ChannelStateDesc: Up",
                             b"PJSIP/104")
    live = alive_channels(head)
    assert [c["Channel"] for c in live] == ["PJSIP/104-00000022"]
    done = []

    def all_applied(listener, server):
        if server.all_sent.is_set() and listener.resyncs and not listener.machine.channels:
            done.append(listener.events_applied)

    run_listener(db_url, [Script(stream=tail, live_channels=live)], lambda s: bool(done), during=all_applied)
    assert done[0] >= 5  # the hangup and the device states after it were applied
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 0
