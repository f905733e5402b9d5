"""The ``astertrack-agi`` daemon as a real process: SIGHUP reloads, SIGTERM drains calls in flight."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from astertrack.routing import dialplan_vars as v
from astertrack.samples.processes import free_port, spawn, stop_process
from tests.agi.conftest import http_get, recording
from tests.agi.fake_asterisk import FakeAsterisk

DAEMON = Path(sys.executable).with_name("astertrack-agi")


def _write_config(path: Path, db_url: str, ring_timeout: int, workers: int = 1, metrics_port: int = 0) -> None:
    path.write_text(f"[database]\nurl = {db_url}\n\n[agi]\nring_timeout = {ring_timeout}\n"
                    f"metrics_port = {metrics_port}\nrequest_timeout = 10\nworkers = {workers}\n\n"
                    "[general]\nlog_level = INFO\n")


class Daemon:
    def __init__(self, config: Path, port: int, log: Path, env: dict[str, str] | None = None):
        self.port = port
        self.log = log
        with log.open("wb") as stderr:
            self.proc = spawn([str(DAEMON), "-c", str(config), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **(env or {})})
        try:
            self.wait_for("FastAGI listening")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """The master and every pre-forked worker (its process group), whatever state they are in."""
        stop_process(self.proc, 10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, needle: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"never saw {needle!r}; log:\n{self.text()}")
            time.sleep(0.05)


@pytest.fixture
def daemon(tmp_path, db_url, seed):
    seed.static_number("+74950000101", "google-ads")
    seed.managers("101")
    seed.commit()
    config = tmp_path / "astertrack.conf"
    _write_config(config, db_url, 20)
    d = Daemon(config, free_port(), tmp_path / "daemon.log")
    d.config, d.db_url = config, db_url
    yield d
    d.stop()


def wait_healthy(metrics_port: int, timeout: float = 20) -> None:
    """Until the metrics port says every worker is up (each beats once its event loop runs)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = http_get(metrics_port, "/healthz")
        except OSError:
            status, body = 0, b""
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not healthy: {status} {body!r}")
        time.sleep(0.1)


def start_workers(tmp_path: Path, db_url: str, metrics_port: int) -> Daemon:
    """Two pre-forked workers with a metrics port; their multiprocess files under tmp_path/tmp."""
    config = tmp_path / "workers.conf"
    _write_config(config, db_url, 20, workers=2, metrics_port=metrics_port)
    (tmp_path / "tmp").mkdir()
    return Daemon(config, free_port(), tmp_path / "workers.log", env={"TMPDIR": str(tmp_path / "tmp")})


def _env():
    return FakeAsterisk.environment(recording("pjsip_fastagi_1"), script="inbound")


def test_sighup_reloads_the_configuration(daemon):
    fake = FakeAsterisk("127.0.0.1", daemon.port)
    assert asyncio.run(fake.session(_env())).variables[v.TIMEOUT] == "20"
    _write_config(daemon.config, daemon.db_url, 33)

    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("configuration reloaded")

    assert asyncio.run(fake.session(_env())).variables[v.TIMEOUT] == "33"
    assert daemon.proc.poll() is None


def test_sigterm_stops_accepting_and_lets_the_call_in_flight_finish(daemon):
    fake = FakeAsterisk("127.0.0.1", daemon.port)

    async def scenario():
        signalled = asyncio.Event()

        async def hold_then_terminate(index, line):
            if index == 2:  # the call is in flight: its first command was answered
                os.kill(daemon.proc.pid, signal.SIGTERM)
                await asyncio.to_thread(daemon.wait_for, "stopping: no new calls accepted")
                await asyncio.sleep(0.2)
                with pytest.raises(OSError):  # the listening socket is closed while this call goes on
                    socket.create_connection(("127.0.0.1", daemon.port), timeout=2).close()
                signalled.set()

        result = await fake.session(_env(), hook=hold_then_terminate, timeout=20)
        assert signalled.is_set()
        return result

    result = asyncio.run(scenario())

    assert result.variables[v.STATUS] == "OK" and result.variables[v.DIAL] == "PJSIP/101"
    assert daemon.proc.wait(15) == 0
    assert "stopped after 1 call(s)" in daemon.text()


def test_a_single_process_daemon_serves_only_its_own_metrics(tmp_path, db_url, seed):
    seed.static_number("+74950000101", "google-ads")
    seed.managers("101")
    seed.commit()
    config = tmp_path / "one.conf"
    metrics_port = free_port()
    _write_config(config, db_url, 20, workers=1, metrics_port=metrics_port)
    daemon = Daemon(config, free_port(), tmp_path / "one.log")
    try:
        result = asyncio.run(FakeAsterisk("127.0.0.1", daemon.port).session(_env(), timeout=30))
        assert result.variables[v.STATUS] == "OK"
        status, body = http_get(metrics_port, "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert status == 200 and "process_resident_memory_bytes" in families
        handled = [s for s in families["astertrack_agi_requests"].samples if s.name.endswith("_total")]
        assert sum(s.value for s in handled) == 1
        assert not [name for name in families if name.startswith(("astertrack_ami_", "astertrack_calls_"))]
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(20) == 0
    finally:
        daemon.stop()


def test_prefork_workers_share_the_port_reload_and_stop_together(tmp_path, db_url, seed):
    seed.static_number("+74950000101", "google-ads")
    seed.managers(*[str(100 + i) for i in range(1, 11)])
    seed.commit()
    metrics_port = free_port()
    daemon = start_workers(tmp_path, db_url, metrics_port)
    try:
        fake = FakeAsterisk("127.0.0.1", daemon.port)

        async def burst():
            return await asyncio.gather(*(fake.session(_env(), timeout=30) for _ in range(20)))

        results = asyncio.run(burst())
        dialled = [r.variables[v.DIAL] for r in results if r.variables[v.DIAL]]
        assert all(r.variables[v.STATUS] == "OK" for r in results)
        assert len(dialled) == 10 and len(set(dialled)) == 10  # the reservation holds across processes

        # One metrics port for both workers (prometheus-client's multiprocess mode): every call
        # counted once, whichever worker took it.  Several scrapes: whichever worker accepts one
        # must answer for both.
        wait_healthy(metrics_port)
        for _ in range(6):
            status, body = http_get(metrics_port, "/metrics")
            assert status == 200
            families = {f.name: f for f in text_string_to_metric_families(body.decode())}
            up = {s.labels["worker"]: s.value for s in families["astertrack_agi_worker_up"].samples}
            assert up == {"0": 1.0, "1": 1.0}
            handled = [s for s in families["astertrack_agi_requests"].samples if s.name.endswith("_total")]
            assert {s.labels["route"] for s in handled} == {"inbound"} and not any("worker" in s.labels for s in handled)
            assert sum(s.value for s in handled) == 20  # both workers' counts summed
            memory = families["process_resident_memory_bytes"].samples
            assert sorted(s.labels["worker"] for s in memory) == ["0", "1"]
        status, body = http_get(metrics_port, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok" and health["checks"]["database"]["ok"]
        assert sorted(health["checks"]["workers"]["detail"]) == ["0", "1"]

        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while daemon.text().count("configuration reloaded") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert daemon.text().count("configuration reloaded") == 2

        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.proc.wait(20) == 0
        assert "all workers stopped" in daemon.text()
        served = sum(int(n) for n in re.findall(r"stopped after (\d+) call", daemon.text()))
        assert served == 20
        assert list((tmp_path / "tmp").iterdir()) == []  # the metrics files went with the daemon
    finally:
        daemon.stop()
