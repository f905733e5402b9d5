"""``astertrack-agi``: the FastAGI server (asyncio, one task per call, DB work in a thread pool).

Asterisk connects to ``agi://127.0.0.1:4573/<route>`` for every call.  SIGTERM/SIGINT stop
accepting and let the calls in flight finish (bounded by the request timeout); SIGHUP
re-reads the configuration.  ``/metrics`` and ``/healthz`` are served on ``[agi] metrics_port``
(with several ``[agi] workers``: the figures of all of them, in prometheus-client's multiprocess
mode, see ``agi.metrics_fanin``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

try:  # imported here, before any fork: a pre-forked worker starts without importing it again
    import uvloop
except ImportError:  # pragma: no cover - not on Windows; the stock loop works too
    uvloop = None

from agi import metrics_fanin
from agi.app import AgiApp
from agi.protocol import MAX_LINE, AGIChannel
from astertrack.config import ConfigError, load_config
from astertrack.ops import metrics
from astertrack.ops.journal import setup_logging

log = logging.getLogger("agi.server")
LISTEN_BACKLOG = 128
# [agi] workers = 0 (auto): one process per core, at most this many.  SQLite has a single
# write lock the processes queue on; PostgreSQL gives each process its own connection pool.
AUTO_WORKERS_MAX = {"sqlite": 2, "postgresql": 4}


def resolve_workers(configured: int, db_url: str, cpus: int | None = None) -> int:
    """``[agi] workers``: a number as configured, or 0 for one per core available to us.

    Why more than one by default: calls that arrive within a millisecond of each other are
    decided side by side on two cores instead of queueing on one event loop (on a 2-core VM,
    2 processes took the in-progress p99 from 5.2-7.7 ms to 4.5-4.9 ms in paired runs).
    """
    if configured:
        return configured
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    return max(1, min(cpus, AUTO_WORKERS_MAX[backend]))


@dataclass
class WorkerMetrics:
    """A pre-forked worker's share of the metrics: the socket on ``[agi] metrics_port`` (bound by
    the parent, accepted on by every worker), this worker's number and how many there are."""

    public: socket.socket
    index: int
    workers: int


class AgiServer:
    """The listening socket and the set of calls in flight."""

    def __init__(self, app: AgiApp):
        self.app = app
        self.server: asyncio.base_events.Server | None = None
        self.in_flight: set[asyncio.Task] = set()
        self.served = 0

    async def start(self, host: str | None = None, port: int | None = None,
                    sock: socket.socket | None = None) -> tuple[str, int]:
        if sock is not None:  # a worker process: the parent owns the listening socket
            self.server = await asyncio.start_server(self._client, sock=sock, limit=MAX_LINE * 2)
        else:
            self.server = await asyncio.start_server(self._client, host, port, limit=MAX_LINE * 2,
                                                     backlog=LISTEN_BACKLOG, reuse_address=True)
        address = self.server.sockets[0].getsockname()[:2]
        log.info("FastAGI listening on %s:%s", *address)
        return address

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.in_flight.add(task)
        peer = writer.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        try:
            await self.app.handle(AGIChannel(reader, writer), peer_text)
        finally:
            self.served += 1
            self.in_flight.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def stop(self, grace: float) -> None:
        """Stop accepting, give the calls in flight ``grace`` seconds, then cancel the rest."""
        if self.server is not None:
            self.server.close()
        pending = set(self.in_flight)
        if pending:
            log.info("waiting for %d call(s) in flight", len(pending))
            done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
        if self.server is not None:
            await self.server.wait_closed()


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="astertrack-agi", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=None, help="configuration file")
    parser.add_argument("--host", default=None, help="override [agi] listen_host")
    parser.add_argument("--port", type=int, default=None, help="override [agi] listen_port")
    return parser.parse_args(argv)


async def run(config_path: str | None, host: str | None = None, port: int | None = None,
              sock: socket.socket | None = None, worker_metrics: WorkerMetrics | None = None) -> int:
    config = load_config(config_path)
    app = AgiApp(config)
    server = AgiServer(app)
    agi_conf = config.values["agi"]
    if sock is not None:
        await server.start(sock=sock)
    else:
        await server.start(host or agi_conf["listen_host"], port if port is not None else agi_conf["listen_port"])
    metrics_servers = []
    heartbeat = None
    checks = {"database": metrics.database_check(app.session_factory)}
    if worker_metrics is not None:  # a pre-forked worker: whichever takes a scrape answers for all
        metrics_servers.append(metrics_fanin.start_worker_server(worker_metrics.public, worker_metrics.workers, checks))
        heartbeat = asyncio.create_task(metrics_fanin.heartbeat(worker_metrics.index))
    elif agi_conf["metrics_port"]:
        try:
            metrics_servers.append(metrics.start_http_server(
                config.values["general"]["metrics_host"], agi_conf["metrics_port"], checks,
                registry=metrics.daemon_registry("astertrack_agi_")))
        except OSError as exc:
            log.error("metrics port %s unavailable: %s", agi_conf["metrics_port"], exc)
    # Everything loaded so far (modules, settings, the engine) lives as long as the process:
    # out of the collector's sight, a full collection stays short instead of pausing a call.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def reload() -> None:
        try:
            app.reload(load_config(config_path))
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload)
    refresher = asyncio.create_task(app.keep_snapshot_fresh())
    await stop.wait()
    log.info("stopping: no new calls accepted")
    refresher.cancel()
    await server.stop(grace=app.settings.request_timeout + 1)
    if heartbeat is not None:
        heartbeat.cancel()
    for metrics_server in metrics_servers:
        metrics_server.shutdown()
        metrics_server.server_close()
    app.close()
    log.info("stopped after %d call(s)", server.served)
    return 0


def run_event_loop(coro) -> int:
    """Run the daemon on uvloop when it is installed (the default on Linux), else on asyncio's loop.

    Every AGI round trip, connection and database hand-off goes through the event loop;
    uvloop's is several times cheaper per operation than the pure-Python selector loop.
    """
    if uvloop is None:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _metrics_socket(metrics_host: str, metrics_port: int) -> socket.socket | None:
    """The metrics socket all workers accept on, or None (off or the port is taken: the calls
    matter more than the figures)."""
    if not metrics_port:
        return None
    try:
        public = socket.create_server((metrics_host, metrics_port))
    except OSError as exc:
        log.error("metrics port %s unavailable: %s", metrics_port, exc)
        return None
    public.setblocking(False)  # every worker waits on it; the ones that lose the accept move on
    return public


def serve_workers(config_path: str | None, host: str, port: int, workers: int,
                  metrics_host: str = "127.0.0.1", metrics_port: int = 0) -> int:
    """Pre-fork: one listening socket, ``workers`` processes accepting on it (one per core).

    The parent only supervises: it forwards SIGTERM/SIGINT/SIGHUP and restarts a worker that
    died.  Each worker opens its own database pool after the fork.  The parent keeps every
    socket open, so a restarted worker takes over the same AGI, metrics and private ports.
    """
    sock = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
    sock.setblocking(False)
    log.info("FastAGI listening on %s:%s with %d workers", host, sock.getsockname()[1], workers)
    metrics_sock = _metrics_socket(metrics_host, metrics_port)
    # PROMETHEUS_MULTIPROC_DIR (made fresh by main() before this process started): cleared of
    # anything older than this start, told of every worker that exits, removed at the end
    metrics_dir = metrics_fanin.MetricsDir.from_environment()
    if metrics_dir is not None:
        metrics_dir.wipe_stale()
    elif metrics_sock is not None:
        log.error("metrics off: the workers' figures need PROMETHEUS_MULTIPROC_DIR (astertrack-agi sets it itself)")
        metrics_sock.close()
        metrics_sock = None
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            # until the worker's loop takes SIGHUP over, a reload must not kill it (it reads the
            # configuration as it starts anyway)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            code = 1
            worker_metrics = None
            if metrics_sock is not None:
                worker_metrics = WorkerMetrics(metrics_sock, index, workers)
            try:
                code = run_event_loop(run(config_path, sock=sock, worker_metrics=worker_metrics))
            finally:
                os._exit(code)
        children[pid] = index

    def forward(signum, _frame) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for index in range(workers):
        spawn(index)
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, None)
        if metrics_dir is not None:
            metrics_dir.worker_exited(pid)
        code = os.waitstatus_to_exitcode(status)
        if stopping or index is None:
            exit_code = exit_code or (code if code > 0 else 0)
            continue
        log.error("worker %d (pid %d) exited with %s; starting a new one", index, pid, code)
        time.sleep(1)
        spawn(index)
    sock.close()
    if metrics_sock is not None:
        metrics_sock.close()
    if metrics_dir is not None:
        metrics_dir.close()
    log.info("all workers stopped")
    return exit_code


def main(argv=None) -> int:
    args = _parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"astertrack-agi: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.values["general"]["log_level"], "astertrack-agi", node=config.values["general"]["node"])
    agi_conf = config.values["agi"]
    workers = resolve_workers(agi_conf["workers"], config.values["database"]["url"])
    if workers > 1:
        if agi_conf["workers"] > AUTO_WORKERS_MAX["sqlite"] and config.values["database"]["url"].startswith("sqlite"):
            log.warning("[agi] workers = %d with SQLite: the workers queue on one database lock; "
                        "use PostgreSQL for more than %d", workers, AUTO_WORKERS_MAX["sqlite"])
        if agi_conf["metrics_port"] and not metrics_fanin.multiprocess_on():
            # the workers' figures are merged by prometheus-client's multiprocess mode, which
            # must be on before the library is imported: start again with it on (same pid)
            metrics_fanin.reexec_with_fresh_dir(sys.argv[1:] if argv is None else list(argv))
        host = args.host or agi_conf["listen_host"]
        port = args.port if args.port is not None else agi_conf["listen_port"]
        return serve_workers(args.config, host, port, workers,
                             config.values["general"]["metrics_host"], agi_conf["metrics_port"])
    return run_event_loop(run(args.config, args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
