"""The pre-forked workers' figures through prometheus-client's multiprocess mode, and their liveness.

The writers here are real processes in multiprocess mode (the test process itself is not: the
library chooses when it is imported), so the files are the library's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agi import metrics_fanin
from agi.server import resolve_workers
from astertrack.routing import dialplan_vars as v
from astertrack.samples.processes import free_port, spawn, stop_process
from tests.agi.conftest import http_get
from tests.agi.fake_asterisk import FakeAsterisk
from tests.agi.test_daemon_signals import _env, start_workers, wait_healthy

WRITER = """
import sys, time
from agi import metrics_fanin
from astertrack.ops import metrics
worker, age, calls = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
metrics_fanin.HEARTBEAT.labels(worker=str(worker)).set(time.time() - age)
metrics.AGI_REQUESTS.labels(route="inbound", result="ok").inc(calls)
metrics.AGI_DECISION_SECONDS.labels(route="inbound").observe(0.01)
metrics.ami_connected(False)
print("ready", flush=True)
sys.stdin.readline()
"""


class Writer:
    """A process in multiprocess mode that beats as worker ``worker`` (``age`` s ago), counts
    ``calls`` requests and stays alive until :meth:`stop`."""

    def __init__(self, path: Path, worker: int, age: float, calls: int):
        env = {**os.environ, metrics_fanin.MULTIPROC_ENV: str(path)}
        self.proc = spawn([sys.executable, "-c", WRITER, str(worker), str(age), str(calls)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        self.pid = self.proc.pid
        try:
            assert self.proc.stdout.readline().strip() == "ready"
        except BaseException:
            stop_process(self.proc, 5)
            raise

    def stop(self) -> None:
        """It leaves on end of input (as a worker goes); if it does not, it is stopped."""
        try:
            if self.proc.poll() is None:
                self.proc.stdin.close()
                self.proc.wait(10)
        finally:
            stop_process(self.proc, 5)


@pytest.fixture
def writers(tmp_path):
    started: list[Writer] = []

    def start(worker: int, age: float, calls: int) -> Writer:
        started.append(Writer(tmp_path, worker, age, calls))
        return started[-1]

    yield start
    for writer in started:
        writer.stop()


def _families(body: bytes) -> dict:
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def _by_worker(family) -> dict[str, float]:
    return {s.labels["worker"]: s.value for s in family.samples}


def test_scrape_sums_the_workers_and_shows_who_is_alive(tmp_path, writers):
    fresh = writers(worker=0, age=0, calls=3)
    stale = writers(worker=1, age=60, calls=4)  # alive, but its event loop has not turned for a minute
    registry, liveness = metrics_fanin.worker_registry(str(tmp_path), workers=3)

    families = _families(generate_latest(registry))
    totals = [s for s in families["astertrack_agi_requests"].samples if s.name.endswith("_total")]
    assert [(s.labels, s.value) for s in totals] == [({"route": "inbound", "result": "ok"}, 7.0)]
    count = [s.value for s in families["astertrack_agi_decision_seconds"].samples if s.name.endswith("_count")]
    assert count == [2.0]
    assert _by_worker(families[metrics_fanin.UP_METRIC]) == {"0": 1.0, "1": 0.0, "2": 0.0}  # 2 never beat
    assert set(_by_worker(families["process_resident_memory_bytes"])) == {"0", "1"}
    assert "python_info" in families
    # only the AGI's own figures: not the AMI gauges every process instantiates, not the heartbeat
    assert not [name for name in families if name.startswith("astertrack_ami")]
    assert metrics_fanin.HEARTBEAT_METRIC not in families

    with pytest.raises(RuntimeError) as silent:
        liveness.check()
    assert "worker 1 (pid" in str(silent.value) and "worker 2: no heartbeat" in str(silent.value)

    # the parent marks a dead worker: its heartbeat goes, its counts stay in the totals
    stale.stop()
    metrics_fanin.MetricsDir(str(tmp_path), owned=False).worker_exited(stale.pid)
    families = _families(generate_latest(registry))
    assert sum(s.value for s in families["astertrack_agi_requests"].samples if s.name.endswith("_total")) == 7
    assert set(_by_worker(families["process_resident_memory_bytes"])) == {"0"}
    assert metrics_fanin.read_heartbeats(str(tmp_path)).keys() == {0}

    _, one = metrics_fanin.worker_registry(str(tmp_path), workers=1)
    detail = one.check()
    assert detail["0"]["pid"] == fresh.pid and detail["0"]["heartbeat_age_s"] < metrics_fanin.STALE_AFTER


def test_worker_server_answers_on_the_shared_socket(tmp_path, writers):
    writers(worker=0, age=0, calls=5)
    public = socket.create_server(("127.0.0.1", 0))
    public.setblocking(False)
    server = metrics_fanin.start_worker_server(public, 2, {"database": lambda: True}, path=str(tmp_path))
    port = public.getsockname()[1]
    try:
        status, body = http_get(port, "/metrics")
        families = _families(body)
        assert status == 200 and _by_worker(families[metrics_fanin.UP_METRIC]) == {"0": 1.0, "1": 0.0}
        assert [s.value for s in families["astertrack_agi_requests"].samples if s.name.endswith("_total")] == [5.0]

        status, body = http_get(port, "/healthz")
        health = json.loads(body)
        assert status == 503 and health["checks"]["database"] == {"ok": True}
        assert health["checks"]["workers"]["error"] == "RuntimeError: worker 1: no heartbeat"
        assert http_get(port, "/nothing")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_dir_starts_fresh_and_is_removed_only_if_the_daemon_made_it(tmp_path, monkeypatch):
    mine = tmp_path / f"counter_{os.getpid()}.db"
    old = [tmp_path / "counter_99999999.db", tmp_path / "gauge_liveall_99999999.db"]
    for path in (mine, *old):
        path.write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not ours to judge")
    given = metrics_fanin.MetricsDir(str(tmp_path), owned=False)
    given.wipe_stale()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "notes.txt"])
    given.close()
    assert tmp_path.is_dir()  # a directory from outside stays

    made = tmp_path / "made"
    made.mkdir()
    monkeypatch.setenv(metrics_fanin.MULTIPROC_ENV, str(made))
    monkeypatch.setenv(metrics_fanin.OWNER_ENV, str(os.getpid()))
    owned = metrics_fanin.MetricsDir.from_environment()
    assert owned is not None and owned.owned
    owned.close()
    assert not made.exists()

    monkeypatch.setenv(metrics_fanin.OWNER_ENV, "1")  # made by another process
    assert not metrics_fanin.MetricsDir.from_environment().owned
    monkeypatch.delenv(metrics_fanin.MULTIPROC_ENV)
    assert metrics_fanin.MetricsDir.from_environment() is None


def _scrape(port: int) -> tuple[dict[str, float], float]:
    families = _families(http_get(port, "/metrics")[1])
    requests = sum(s.value for s in families["astertrack_agi_requests"].samples if s.name.endswith("_total"))
    return _by_worker(families[metrics_fanin.UP_METRIC]), requests


def _process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (``T``: stopped by a signal)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _until(what, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not (result := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return result


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # liveness does not depend on the database
def test_daemon_reports_a_stuck_worker_and_keeps_a_killed_ones_counts(tmp_path, db_url, seed):
    seed.static_number("+74950000101", "google-ads")
    seed.managers("101", "102", "103", "104")
    seed.commit()
    metrics_port = free_port()
    daemon = start_workers(tmp_path, db_url, metrics_port)
    stopped = None
    try:
        fake = FakeAsterisk("127.0.0.1", daemon.port)

        async def calls():
            return await asyncio.gather(*(fake.session(_env(), timeout=30) for _ in range(4)))

        assert all(r.variables[v.STATUS] == "OK" for r in asyncio.run(calls()))
        wait_healthy(metrics_port)
        [files] = (tmp_path / "tmp").iterdir()  # the daemon's own fresh PROMETHEUS_MULTIPROC_DIR
        pids = {w: d["pid"] for w, d in json.loads(http_get(metrics_port, "/healthz")[1])["checks"]["workers"]["detail"].items()}

        # Stuck, not exited: multiprocess mode alone would still count it; the heartbeat does not.
        stopped = pids["1"]
        os.kill(stopped, signal.SIGSTOP)
        # Scrape only once it has really stopped: a worker still running for a moment could
        # accept the scrape and then freeze with it (a busy machine delivers SIGSTOP late).
        _until(lambda: _process_state(stopped) == "T")
        _until(lambda: _scrape(metrics_port)[0] == {"0": 1.0, "1": 0.0})
        status, body = http_get(metrics_port, "/healthz")
        assert status == 503 and "worker 1 (pid" in json.loads(body)["checks"]["workers"]["error"]
        assert _scrape(metrics_port)[1] == 4
        os.kill(stopped, signal.SIGCONT)
        stopped = None
        wait_healthy(metrics_port)

        # Killed: the parent marks it dead and starts another; its counts stay in the totals.
        os.kill(pids["1"], signal.SIGKILL)
        daemon.wait_for(f"worker 1 (pid {pids['1']}) exited")
        assert not (files / f"gauge_liveall_{pids['1']}.db").exists()
        wait_healthy(metrics_port)
        detail = json.loads(http_get(metrics_port, "/healthz")[1])["checks"]["workers"]["detail"]
        assert detail["1"]["pid"] != pids["1"] and detail["0"]["pid"] == pids["0"]
        assert _scrape(metrics_port) == ({"0": 1.0, "1": 1.0}, 4)

        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(20) == 0
        assert not files.exists()
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        daemon.stop()


def test_auto_workers_one_per_core_capped_by_database():
    assert resolve_workers(0, "sqlite:////var/lib/astertrack/astertrack.db", cpus=1) == 1
    assert resolve_workers(0, "sqlite:////var/lib/astertrack/astertrack.db", cpus=2) == 2
    assert resolve_workers(0, "sqlite:////var/lib/astertrack/astertrack.db", cpus=16) == 2
    assert resolve_workers(0, "postgresql+psycopg://astertrack@db/astertrack", cpus=2) == 2
    assert resolve_workers(0, "postgresql+psycopg://astertrack@db/astertrack", cpus=16) == 4
    assert resolve_workers(3, "sqlite:////tmp/x.db", cpus=1) == 3  # a number is taken as configured
    assert resolve_workers(0, "sqlite:////tmp/x.db") >= 1
