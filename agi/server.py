"""``astertrack-agi``: the FastAGI server (asyncio, one task per call, DB work in a thread pool).

Asterisk connects to ``agi://127.0.0.1:4573/<route>`` for every call.  SIGTERM/SIGINT stop
accepting and let the calls in flight finish (bounded by the request timeout); SIGHUP
re-reads the configuration.  ``/metrics`` and ``/healthz`` are served on ``[agi] metrics_port``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from agi.app import AgiApp
from agi.protocol import MAX_LINE, AGIChannel
from astertrack import metrics
from astertrack.config import ConfigError, load_config

log = logging.getLogger("agi.server")
LISTEN_BACKLOG = 128


class AgiServer:
    """The listening socket and the set of calls in flight."""

    def __init__(self, app: AgiApp):
        self.app = app
        self.server: asyncio.base_events.Server | None = None
        self.in_flight: set[asyncio.Task] = set()
        self.served = 0

    async def start(self, host: str, port: int) -> tuple[str, int]:
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


async def run(config_path: str | None, host: str | None = None, port: int | None = None) -> int:
    config = load_config(config_path)
    app = AgiApp(config)
    server = AgiServer(app)
    agi_conf = config.values["agi"]
    await server.start(host or agi_conf["listen_host"], port if port is not None else agi_conf["listen_port"])
    metrics_server = None
    if agi_conf["metrics_port"]:
        try:
            metrics_server = metrics.start_http_server(
                config.values["general"]["metrics_host"], agi_conf["metrics_port"],
                {"database": metrics.database_check(app.session_factory)})
        except OSError as exc:
            log.error("metrics port %s unavailable: %s", agi_conf["metrics_port"], exc)
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
    await stop.wait()
    log.info("stopping: no new calls accepted")
    await server.stop(grace=app.settings.request_timeout + 1)
    if metrics_server is not None:
        metrics_server.shutdown()
    app.close()
    log.info("stopped after %d call(s)", server.served)
    return 0


def main(argv=None) -> int:
    args = _parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"astertrack-agi: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.values["general"]["log_level"],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run(args.config, args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
