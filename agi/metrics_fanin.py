"""One ``/metrics`` and ``/healthz`` for the pre-forked FastAGI workers, on ``[agi] metrics_port``.

prometheus-client's multiprocess mode does the merging: each worker keeps its counters and
histograms in memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR``, and whichever worker accepts
a scrape on the shared socket reads every worker's files and answers for the daemon as a whole
(``astertrack_agi_requests_total`` is the sum over the workers, with no worker label).

The parent's side (:class:`MetricsDir`): a fresh directory per daemon start, made before the
library is imported (:func:`reexec_with_fresh_dir`), ``mark_process_dead`` for each worker that
exits, and the directory removed on exit.

What multiprocess mode cannot do, kept here by hand:

* **Liveness** (``astertrack_agi_worker_up{worker}`` and ``/healthz``).  Multiprocess mode knows
  files, not processes: a worker that has exited but not been marked dead yet, or one that is
  alive but stuck, keeps its values and looks exactly like a healthy one.  So each worker's
  event loop writes a heartbeat (a ``liveall`` gauge: the transport is multiprocess mode's own
  files), and the scrape calls a worker up only while its heartbeat is recent.  A worker whose
  loop does not turn takes no calls either, which is what the figure is for.  The parent could
  only tell exited workers; it cannot see a stuck one.
* **Process figures** (``process_*``).  A ``ProcessCollector`` reports the process that runs it,
  i.e. whichever worker answered; multiprocess mode does not support it.  The heartbeat carries
  each worker's pid, so the answering worker reads every live worker's figures from ``/proc``
  and labels them ``worker="N"``.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NoReturn

from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from astertrack.ops import metrics

log = logging.getLogger("agi.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Set next to it, to this daemon's pid, when the daemon made the directory itself: the parent
# (the same pid after the exec) removes it on exit.  Not ASTERTRACK_*: those are settings.
OWNER_ENV = "PROMETHEUS_MULTIPROC_DIR_OWNER_PID"
UP_METRIC = "astertrack_agi_worker_up"
HEARTBEAT_METRIC = "astertrack_agi_worker_heartbeat_timestamp_seconds"
HEARTBEAT_SECONDS = 1.0
# A worker whose event loop has not turned for this long counts as down.
STALE_AFTER = 5.0

# Internal: read back by the scrape, not exported (its pid label would make a new series per restart).
HEARTBEAT = Gauge(HEARTBEAT_METRIC, "Unix time this FastAGI worker's event loop last turned", ["worker"],
                  multiprocess_mode="liveall", registry=None)


def multiprocess_on() -> bool:
    """Whether this process runs in multiprocess mode.  The library chooses once, when it is
    imported, from the environment; nothing here sets the variable without exec'ing afterwards."""
    return MULTIPROC_ENV in os.environ


def reexec_with_fresh_dir(argv: list[str]) -> NoReturn:
    """Start this daemon again, same pid, with ``PROMETHEUS_MULTIPROC_DIR`` on a new private directory.

    prometheus-client picks its value store when it is first imported, and this process has
    imported it already (every module that counts something imports it); its documentation
    asks for the variable to be in the environment before start-up, not set from Python.  An
    exec is that start-up, done by the daemon itself, so no unit or wrapper script has to know.
    """
    path = tempfile.mkdtemp(prefix="astertrack-agi-metrics-")
    env = {**os.environ, MULTIPROC_ENV: path, OWNER_ENV: str(os.getpid())}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "agi.server", *argv], env)


class MetricsDir:
    """The parent's bookkeeping of ``PROMETHEUS_MULTIPROC_DIR``."""

    def __init__(self, path: str, owned: bool):
        self.path = path
        self.owned = owned

    @classmethod
    def from_environment(cls) -> MetricsDir | None:
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return None
        return cls(path, owned=os.environ.get(OWNER_ENV) == str(os.getpid()))

    def wipe_stale(self) -> None:
        """Start fresh: remove every file but this process's own (a directory given from outside
        may hold a previous run's files; figures from processes long gone would count again)."""
        mine = f"_{os.getpid()}.db"
        for name in glob.glob(os.path.join(self.path, "*.db")):
            if not name.endswith(mine):
                os.remove(name)

    def worker_exited(self, pid: int) -> None:
        """Drop a dead worker's ``live*`` gauges (its heartbeat among them).  Its counter and
        histogram files stay on purpose: they are part of the daemon's totals."""
        mark_process_dead(pid, self.path)

    def close(self) -> None:
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)


async def heartbeat(worker: int, interval: float = HEARTBEAT_SECONDS) -> None:
    """Run on a worker's event loop: every ``interval`` s, record that the loop turns."""
    beat = HEARTBEAT.labels(worker=str(worker))
    while True:
        beat.set(time.time())
        await asyncio.sleep(interval)


def read_heartbeats(path: str) -> dict[int, tuple[float, int]]:
    """Worker number -> (last heartbeat, pid) of every worker not marked dead, from the files.

    Only the ``liveall`` gauge files are read: the heartbeat is the only gauge of that mode."""
    beats: dict[int, tuple[float, int]] = {}
    for family in MultiProcessCollector.merge(glob.glob(os.path.join(path, "gauge_liveall_*.db"))):
        if family.name != HEARTBEAT_METRIC:
            continue
        for sample in family.samples:
            worker, pid = int(sample.labels["worker"]), int(sample.labels["pid"])
            # a restarted worker's predecessor may linger until the parent marks it dead
            if worker not in beats or sample.value > beats[worker][0]:
                beats[worker] = (sample.value, pid)
    return beats


def _labelled(families: Iterable[Metric], worker: int, into: dict[str, Metric]) -> None:
    for family in families:
        merged = into.setdefault(family.name, Metric(family.name, family.documentation, family.type, family.unit))
        for sample in family.samples:
            merged.add_sample(sample.name, {**sample.labels, "worker": str(worker)}, sample.value, sample.timestamp)


class WorkersCollector(Collector):
    """``astertrack_agi_worker_up{worker}`` and every live worker's ``process_*``, from the heartbeats."""

    def __init__(self, path: str, workers: int, clock: Callable[[], float] = time.time,
                 proc: str = "/proc"):
        self.path = path
        self.workers = workers
        self.clock = clock
        self.proc = proc

    def collect(self):
        beats = read_heartbeats(self.path)
        now = self.clock()
        up = GaugeMetricFamily(UP_METRIC, f"1 if this FastAGI worker's event loop turned in the last {STALE_AFTER:g} s",
                               labels=["worker"])
        process: dict[str, Metric] = {}
        for worker in range(self.workers):
            beat = beats.get(worker)
            alive = beat is not None and now - beat[0] <= STALE_AFTER
            up.add_metric([str(worker)], 1.0 if alive else 0.0)
            if beat is not None:
                pid = beat[1]
                _labelled(ProcessCollector(pid=lambda pid=pid: pid, proc=self.proc, registry=None).collect(),
                          worker, process)
        yield up
        yield from process.values()

    def check(self) -> dict[str, dict[str, float | int]]:
        """For ``/healthz``: every worker's pid and heartbeat age, or an error naming the silent ones."""
        beats = read_heartbeats(self.path)
        now = self.clock()
        detail, silent = {}, []
        for worker in range(self.workers):
            beat = beats.get(worker)
            if beat is None:
                silent.append(f"worker {worker}: no heartbeat")
                continue
            age = now - beat[0]
            detail[str(worker)] = {"pid": beat[1], "heartbeat_age_s": round(age, 3)}
            if age > STALE_AFTER:
                silent.append(f"worker {worker} (pid {beat[1]}): silent for {age:.1f} s")
        if silent:
            raise RuntimeError("; ".join(silent))
        return detail


def worker_registry(path: str, workers: int) -> tuple[CollectorRegistry, WorkersCollector]:
    """What the shared port answers: the workers' merged AGI figures, their liveness, their process
    figures and the (same for all) Python platform."""
    registry = metrics.multiprocess_registry("astertrack_agi_", path=path, exclude=[HEARTBEAT_METRIC])
    liveness = WorkersCollector(path, workers)
    registry.register(liveness)
    PlatformCollector(registry=registry)
    return registry, liveness


def start_worker_server(sock: socket.socket, workers: int, checks: Mapping[str, metrics.HealthCheck],
                        path: str | None = None) -> metrics.MetricsServer:
    """Serve the shared metrics socket from this worker (a daemon thread; ``.shutdown()`` on stop).

    Every worker accepts on the same socket; whichever takes a scrape answers for all of them."""
    registry, liveness = worker_registry(path or os.environ[MULTIPROC_ENV], workers)
    host, port = sock.getsockname()[:2]
    return metrics.start_http_server(host, port, {**checks, "workers": liveness.check}, registry=registry, sock=sock)
