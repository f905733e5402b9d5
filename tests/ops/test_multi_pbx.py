"""Several PBXs, one PostgreSQL: real daemon processes on loopback, sharing one database.

* two ``astertrack-ami`` processes (nodes pbx-a and pbx-b), each fed different recorded captures
  by its own fake Asterisk, write into one database: every call exactly once, under the right
  node, with the right outcome, and the rows the AGI wrote first keep their attribution;
* two tracker deployments (two gunicorn masters, two workers each) allocate numbers from one
  pool at the same time: a number is never live for two visitors.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import Base, Call, NumberAssignment, OverflowEvent, VisitorSession
from astertrack.samples.factories import FALLBACK_NUMBER, add_managers, pooled_site
from astertrack.samples.processes import BIN, free_port, spawn, start_daemon, stop_process, wait_for_http
from tests.ami.fake_ami import FakeAmiServer, capture_body
from tests.ami.fake_ami import Session as Script
from tests.ami.ground_truth import ALL, PJSIP, SIP
from tests.conftest import RECORDED_ASTERISK, scratch_pg_database

AMI_DIR = RECORDED_ASTERISK / "ami"
SECRET = "s3cret"
TOLERANCE = 1.0
# Different captures per node, plus two Local-set calls fed to BOTH nodes: identical Asterisk
# linkedids/uniqueids on two PBXs must still be two calls (ids are only unique per PBX).
SHARED_LOCAL = ["a_answered_101", "b_noanswer_102"]
NODES = {
    "pbx-a": SHARED_LOCAL + ["c_busy_103"] + [e.capture for e in SIP],
    "pbx-b": SHARED_LOCAL + [e.capture for e in PJSIP],
}


@pytest.fixture
def shared_pg(pg_admin_url):
    """A private PostgreSQL database with the current schema (the fleet's shared database)."""
    if pg_admin_url is None:
        pytest.skip("no PostgreSQL available: the several-PBX setup needs it")
    with scratch_pg_database(pg_admin_url, "astertrack_fleet") as url:
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        yield url


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(0o600)
    return path


class LoopThread:
    """An asyncio loop in a thread, for the fake Asterisk servers."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.mark.slow
def test_two_listeners_one_database(shared_pg, tmp_path):
    factory = make_session_factory(make_engine(shared_pg))
    agi_rows = {}
    with factory() as session:
        extensions = ("101", "102", "103", "104", "105")
        for tech in ("SIP", "PJSIP"):
            add_managers(session, extensions, tech=tech, names=[f"{tech} {ext}" for ext in extensions])
        # The node's AGI writes its row first (with the attribution); its listener completes it.
        for node, captures in NODES.items():
            for capture in captures:
                uid = ALL[capture].call_uid
                if uid:
                    session.add(Call(call_uid=uid, node=node, state="ringing", utm_source=f"agi-{node}",
                                     started_at=dt.datetime.now(dt.UTC)))
                    agi_rows[uid] = node
        session.commit()

    loop = LoopThread()
    servers, procs = {}, {}
    try:
        for node, captures in NODES.items():
            stream = b"".join(capture_body(AMI_DIR / f"{c}.ami.txt") for c in captures)
            server = FakeAmiServer([Script(stream=stream, chunk_size=1400)], secret=SECRET)
            port = loop.run(server.start())
            servers[node] = server
            conf = write_config(tmp_path / f"{node}.conf", f"""[general]
node = {node}
log_level = INFO
[database]
url = {shared_pg}
[ami]
host = 127.0.0.1
port = {port}
username = astertrack
secret = {SECRET}
metrics_port = 0
reconnect_max_delay = 0.5
""")
            procs[node] = start_daemon("astertrack-ami", conf)
        expected = {node: len(captures) for node, captures in NODES.items()}
        deadline = time.monotonic() + 90
        while True:
            with factory() as session:
                done = dict(session.execute(select(Call.node, func.count()).where(Call.state == "finished")
                                            .group_by(Call.node)).all())
            if done == expected:
                break
            for node, proc in procs.items():
                assert proc.poll() is None, f"{node} listener exited:\n{stop_process(proc)}"
            assert time.monotonic() < deadline, f"finished calls per node {done}, expected {expected}"
            time.sleep(0.2)
        time.sleep(1.0)  # anything late (a duplicate) would land now
    finally:
        logs = {node: stop_process(proc) for node, proc in procs.items()}
        for server in servers.values():
            loop.run(server.close())
        loop.stop()

    for node, log in logs.items():
        assert "Traceback" not in log, f"{node}:\n{log}"
    with factory() as session:
        calls = session.scalars(select(Call)).all()
    per_node = {node: [c for c in calls if c.node == node] for node in NODES}
    assert {node: len(rows) for node, rows in per_node.items()} == {n: len(c) for n, c in NODES.items()}
    assert len({c.call_uid for c in calls}) == len(calls)
    for node, captures in NODES.items():
        rows = per_node[node]
        by_uid = {c.call_uid: c for c in rows}
        unclaimed = [c for c in rows if c.call_uid not in agi_rows]
        for capture in captures:
            want = ALL[capture]
            if want.call_uid:
                call = by_uid[want.call_uid]
                assert call.utm_source == f"agi-{node}", (capture, "the AGI's attribution was overwritten")
            else:
                # Two unclaimed pbx-a calls share DID and outcome (Local a_answered_101 and
                # sip_k_agi_down_fallback): the recording tells them apart, whatever the row order.
                matches = [c for c in unclaimed if c.did == "+" + want.did and c.outcome == want.outcome
                           and c.missed_reason == want.reason and recording_file(c) == want.recording]
                assert len(matches) == 1, (node, capture, matches)
                call = matches[0]
                unclaimed.remove(call)
            assert call.state == "finished" and call.outcome == want.outcome, (node, capture, call.outcome)
            assert call.missed_reason == want.reason, (node, capture)
            assert call.wait_seconds == pytest.approx(want.wait, abs=TOLERANCE), (node, capture)
            assert call.talk_seconds == pytest.approx(want.talk, abs=TOLERANCE), (node, capture)
        assert not unclaimed
    # The same Asterisk call ids on both PBXs are two different calls, one per node, never merged.
    pairs = [(c.node, c.linkedid) for c in calls if c.linkedid]
    assert len(pairs) == len(set(pairs))
    nodes_by_linkedid: dict[str, set[str]] = {}
    for node, linkedid in pairs:
        nodes_by_linkedid.setdefault(linkedid, set()).add(node)
    on_both = [linkedid for linkedid, nodes in nodes_by_linkedid.items() if nodes == set(NODES)]
    assert len(on_both) == len(SHARED_LOCAL)


def recording_file(call: Call) -> str | None:
    return Path(call.recording_path).name if call.recording_path else None


def post_json(url: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "text/plain;charset=UTF-8", "Origin": "http://127.0.0.1",  # as a browser posts
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, json.load(response)


@pytest.mark.slow
def test_two_tracker_deployments_never_share_a_number(shared_pg, tmp_path):
    visitors, pool = 120, 20
    factory = make_session_factory(make_engine(shared_pg))
    with factory() as session:
        site = pooled_site(session, pool)
        key = site.public_key
    procs, urls = [], []
    try:
        for name in ("tracker-a", "tracker-b"):
            port = free_port()
            conf = write_config(tmp_path / f"{name}.conf", f"""[database]
url = {shared_pg}
pool_size = 10
[tracker]
listen_host = 127.0.0.1
listen_port = {port}
rate_limit_per_minute = 0
maintenance_seconds = 0
max_holds_per_ip = 0
max_holds_per_visitor = 0
pool_pressure = 0
""")
            proc = spawn(
                [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "gthread",
                 "--threads", "8", "tracker:create_app()"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "ASTERTRACK_CONFIG": str(conf)})
            procs.append(proc)
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            wait_for_http(url + "/healthz", proc)
        barrier = threading.Barrier(visitors)

        def visit(i: int):
            barrier.wait()
            return post_json(f"{urls[i % 2]}/v/start", {"k": key, "visitor_id": f"fleet-visitor-{i}"})

        with ThreadPoolExecutor(visitors) as executor:
            results = list(executor.map(visit, range(visitors)))
    finally:
        logs = [stop_process(proc) for proc in procs]
    assert all(status == 200 for status, _ in results), logs
    bodies = [body for _, body in results]
    numbers = [b["number"] for b in bodies if b["kind"] == "pool"]
    assert len(numbers) == pool and len(set(numbers)) == pool  # each number handed out exactly once
    assert [b["number"] for b in bodies if b["kind"] != "pool"] == [FALLBACK_NUMBER] * (visitors - pool)
    with factory() as session:
        live = session.execute(select(NumberAssignment.number_id)
                               .where(NumberAssignment.released_at.is_(None))).scalars().all()
        assert len(live) == pool and len(set(live)) == pool
        assert session.scalar(select(func.count()).select_from(VisitorSession)) == visitors
        assert session.scalar(select(func.count()).select_from(OverflowEvent)) == visitors - pool
