"""``astertrack run`` as a terminal user runs it: real processes (gunicorn, the event worker, the
web admin on SQLite), stopped by Ctrl-C with live streams open, and refusing to half-start when
a port is taken.  Every process is started in a session of its own and its whole group is
stopped whatever happens."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import Base, User
from astertrack.ops.supervise import Child, supervise
from astertrack.passwords import hash_password
from astertrack.samples.processes import BIN, free_port, stop_process, wait_for_http
from tests.webadmin.live_client import Browser

PASSWORD = "correct-horse-1"


@pytest.fixture
def trial(tmp_path):
    """A trial box's config: SQLite with the schema and one supervisor, free ports."""
    url = f"sqlite:///{tmp_path / 'astertrack.db'}"
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with make_session_factory(engine)() as db:
        db.add(User(login="super", password_hash=hash_password(PASSWORD), role="supervisor", locale="en"))
        db.commit()
    engine.dispose()
    web, tracker = free_port(), free_port()
    conf = tmp_path / "astertrack.conf"
    conf.write_text(f"[database]\nurl = {url}\n\n[web]\nlisten_port = {web}\nsecret_key = run-test-secret\n"
                    f"secure_cookies = no\n\n[tracker]\nlisten_port = {tracker}\n\n"
                    f"[recordings]\ndir = {tmp_path / 'rec'}\n")
    return conf, web, tracker


def start_run(conf) -> subprocess.Popen:
    """``astertrack run`` in a session of its own; its output goes to ``run.log`` beside the config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASTERTRACK_CONFIG", "ASTERTRACK_GUNICORN_"))}
    with (conf.parent / "run.log").open("wb") as log:
        return subprocess.Popen([str(BIN / "astertrack"), "run", "--no-agi", "--no-ami"], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**env, "ASTERTRACK_CONFIG": str(conf)})


def group_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_stops_everything_within_3_s_with_live_streams_open(trial):
    conf, web, tracker = trial
    proc = start_run(conf)
    streams = []
    try:
        log = conf.parent / "run.log"
        wait_for_http(f"http://127.0.0.1:{web}/healthz", proc, name="astertrack run (web)", log=log, timeout=60)
        wait_for_http(f"http://127.0.0.1:{tracker}/v.js", proc, name="astertrack run (tracker)", log=log,
                      timeout=60)
        browser = Browser(web).login("super")
        streams = [browser.stream("/live/board/stream") for _ in range(5)]
        assert all(s.events(5, until="board") for s in streams)
        started = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole foreground group
        proc.wait(10)
        stopped = time.monotonic() - started
        assert group_gone(proc.pid, 3.0 - min(stopped, 3.0) + 0.1), "a child outlived astertrack run"
        assert stopped <= 3.0, f"astertrack run took {stopped:.1f} s to stop"
        assert all(s.ended_within(1) for s in streams)
    finally:
        for s in streams:
            s.close()
        stop_process(proc, 10, group=True)


def test_a_taken_port_is_named_and_nothing_starts(trial):
    conf, web, tracker = trial
    holder = socket.socket()
    holder.bind(("127.0.0.1", web))
    holder.listen()
    proc = start_run(conf)
    try:
        assert proc.wait(30) == 1
        output = (conf.parent / "run.log").read_text()
        assert f"port {web} on 127.0.0.1 is already in use" in output and "web admin" in output
        with pytest.raises(OSError):  # the tracker was not left running
            socket.create_connection(("127.0.0.1", tracker), timeout=0.5).close()
    finally:
        holder.close()
        stop_process(proc, 10, group=True)


def test_a_server_that_exits_stops_the_others(capsys):
    """Say another program takes the port between the check and the bind: the server exits, and
    the rest stops with a message naming the port instead of running half a system."""
    port = free_port()
    sleeper = Child("AMI listener", [sys.executable, "-c", "import time; time.sleep(60)"])
    children = [Child("tracker", [sys.executable, "-c", "import sys; sys.exit(3)"], port=("127.0.0.1", port)),
                sleeper]
    started = time.monotonic()
    try:
        assert supervise(children, poll=0.1) == 1
        assert time.monotonic() - started < 5
        assert sleeper.process.poll() is not None
        assert f"[tracker] exited with status 3: the tracker (port {port} on 127.0.0.1) is not serving" \
            in capsys.readouterr().out
    finally:
        for child in children:
            if child.process is not None:
                stop_process(child.process, 5)
