"""One AGI request from start to end, the same for FastAGI and the process-per-call script.

Read the environment, find the route, run it within ``[agi] request_timeout``, and if
anything at all goes wrong apply the failure policy: log one line, set ``CT_STATUS=FAILED``
and the fallback destination so the dialplan connects the caller anyway.  Database work
runs in a thread pool so a slow query never stalls the other calls' sockets; on SQLite (a
local file, sub-millisecond queries) it runs on the event loop itself, which saves two
thread hand-offs per decision, and moves to the threads whenever the file is locked.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

import agi.routes  # noqa: F401  (importing the package registers every route)
from agi import announce
from agi.database import InlineBusy, agi_engine, close_engine, inline_engine, run_inline, run_with_retry
from agi.protocol import (
    AGIChannel,
    AGIConnectionClosed,
    AGIEnvironment,
    AGIError,
    AGIHangup,
    AGIProtocolError,
)
from agi.registry import ROUTES, UnknownRouteError, lookup
from agi.settings import AgiSettings
from agi.snapshot import SnapshotCache
from astertrack.config import Config
from astertrack.db.engine import make_session_factory
from astertrack.db.types import utcnow
from astertrack.ops import metrics
from astertrack.routing import rules

log = logging.getLogger("agi")
FAILURE_SEND_TIMEOUT = 1.0


@dataclass
class Request:
    """What a route gets: the channel to talk to, the environment, and the app's services."""

    channel: AGIChannel
    env: AGIEnvironment
    app: AgiApp
    route: str
    started: float = field(default_factory=time.perf_counter)
    result: str = "ok"  # for metrics: ok, fallback, failed, hangup, unknown_route
    note: str = ""  # one-line summary for the log

    @property
    def args(self) -> list[str]:
        return self.env.args

    @property
    def settings(self) -> AgiSettings:
        return self.app.settings

    def now(self) -> dt.datetime:
        return self.app.clock()

    async def db(self, func, *args: Any) -> Any:
        return await self.app.run_db(func, *args)


class AgiApp:
    """Settings, database and thread pool shared by every request of one process."""

    def __init__(self, config: Config, session_factory: sessionmaker[Session] | None = None,
                 db_workers: int | None = None, long_running: bool = True):
        self.config = config
        self.clock: Callable[[], dt.datetime] = utcnow  # the simulator's parity tests set a simulated clock
        self.settings = AgiSettings.from_config(config)
        self.snapshots = SnapshotCache(self.settings.cache_seconds)
        self._slots: asyncio.Semaphore | None = None  # created in the serving event loop
        self._own_engine = None
        self._long_running = long_running
        if session_factory is None:
            self._own_engine = agi_engine(config, long_running)
            session_factory = make_session_factory(self._own_engine)
        self.session_factory = session_factory
        self._inline_engine = inline_engine(config, long_running) if self._own_engine is not None else None
        self.inline_factory = self._inline_sessions(self._inline_engine)
        workers = db_workers or config.values["agi"]["db_threads"] or config.values["database"]["pool_size"]
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agi-db")

    def reload(self, config: Config) -> None:
        """SIGHUP: new settings now; a changed database URL gets a new engine."""
        old_url = self.config.values["database"]["url"]
        self.config = config
        self.settings = AgiSettings.from_config(config)
        self.snapshots = SnapshotCache(self.settings.cache_seconds)  # rules and numbers re-read now
        self._slots = None  # new max_parallel from the next call on
        if self._own_engine is not None and config.values["database"]["url"] != old_url:
            old_engine, old_inline = self._own_engine, self._inline_engine
            self._own_engine = agi_engine(config, self._long_running)
            self.session_factory = make_session_factory(self._own_engine)
            self._inline_engine = inline_engine(config, self._long_running)
            self.inline_factory = self._inline_sessions(self._inline_engine)
            close_engine(old_engine)
            if old_inline is not None:
                old_inline.dispose()
        log.info("configuration reloaded")

    async def keep_snapshot_fresh(self) -> None:
        """Check the routing snapshot every ``[agi] cache_seconds`` in a worker thread (re-read
        it when the configuration changed), so no call pays for either (runs until cancelled; a
        failed check keeps the old snapshot)."""
        loop = asyncio.get_running_loop()
        while True:
            cache = self.snapshots  # a SIGHUP replaces it: refresh the new one from then on
            if cache.ttl <= 0:  # 0 = read on every call: nothing to keep fresh
                await asyncio.sleep(1.0)
                continue
            cache.refreshed = True
            try:
                await loop.run_in_executor(self.executor, cache.refresh, self.session_factory)
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not end the refresher
                log.warning("routing snapshot check failed (%s); calls keep the previous one", exc)
            await asyncio.sleep(cache.ttl)

    @staticmethod
    def _inline_sessions(engine) -> sessionmaker[Session] | None:
        return make_session_factory(engine) if engine is not None else None

    async def run_db(self, func, *args: Any) -> Any:
        if self.inline_factory is not None:
            try:
                return run_inline(func, self.inline_factory, *args)
            except InlineBusy:
                metrics.AGI_INLINE_BUSY.inc()  # the step rolled back; the thread pool runs it again
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor,
                                          functools.partial(run_with_retry, func, self.session_factory, *args))

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self._own_engine is not None:
            close_engine(self._own_engine)
        if self._inline_engine is not None:
            self._inline_engine.dispose()

    def fallback_destination(self) -> str:
        try:
            destination = rules.parse_destination(self.settings.fallback_dial)
        except rules.DestinationError:
            log.error("[agi] fallback_dial %r is not a safe destination; ignoring it", self.settings.fallback_dial)
            return ""
        return str(destination) if destination else ""

    async def handle(self, channel: AGIChannel, peer: str = "", route_override: str | None = None) -> Request | None:
        """Serve one AGI session; never raises."""
        try:
            # asyncio.timeout, not wait_for: no extra task and loop round per request
            async with asyncio.timeout(self.settings.request_timeout):
                env = await channel.read_environment()
        except AGIConnectionClosed:
            log.warning("agi %s: peer closed the connection before the environment ended", peer)
            return None
        except (TimeoutError, AGIProtocolError) as exc:
            log.error("agi %s: unusable environment (%s); sending the call to the fallback",
                      peer, str(exc) or "no blank line within the request timeout")
            metrics.AGI_REQUESTS.labels(route="unknown", result="failed").inc()
            await self._fail(channel, peer)
            return None
        name = route_override or env.script or (env.args[0] if env.args else "")
        if route_override is None and not env.script and env.args:
            env.args = env.args[1:]  # classic AGI: AGI(astertrack-agi-script,inbound,...)
        request = Request(channel=channel, env=env, app=self, route=name)
        if env.problems:
            log.warning("agi %s %s: environment problems: %s", peer, name, "; ".join(env.problems[:5]))
        try:
            route = lookup(name)
            async with asyncio.timeout(self.settings.request_timeout):
                await self._admitted(route, request)
        except UnknownRouteError as exc:
            request.result = "unknown_route"
            log.error("agi %s: %s; sending the call to the fallback", peer, exc)
            await self._fail(channel, peer)
        except (AGIHangup, AGIConnectionClosed) as exc:
            request.result = "hangup"
            log.info("agi %s %s: caller gone (%s)", peer, name, exc)
        except TimeoutError:
            request.result = "failed"
            log.error("agi %s %s: no decision within %.1fs; sending the call to the fallback",
                      peer, name, self.settings.request_timeout)
            await self._fail(channel, peer)
        except Exception as exc:  # noqa: BLE001 - the failure policy covers every error
            request.result = "failed"
            first_line = str(exc).splitlines()[0][:300] if str(exc) else ""
            log.error("agi %s %s: %s: %s; sending the call to the fallback", peer, name, type(exc).__name__,
                      first_line)
            log.debug("agi %s %s: traceback", peer, name, exc_info=True)
            await self._fail(channel, peer)
        channel.end()  # the dialplan moves on now; the bookkeeping below is ours alone
        elapsed = time.perf_counter() - request.started
        label = name if name in ROUTES else "unknown"  # the name comes from the wire: bound the label set
        metrics.AGI_DECISION_SECONDS.labels(route=label).observe(elapsed)
        metrics.AGI_REQUESTS.labels(route=label, result=request.result).inc()
        log.info("agi %s %s %s in %.1f ms%s", peer, name, request.result, elapsed * 1000,
                 f": {request.note}" if request.note else "")
        return request

    async def _admitted(self, route, request: Request) -> None:
        """Run the route once a decision slot is free.

        A burst of calls is served first come, first served by a few decisions at a time
        instead of all of them interleaving: the same total work, but the first callers get
        their answer early instead of everyone waiting for the slowest.
        """
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.max_parallel)
        async with self._slots:
            await route(request)

    async def _fail(self, channel: AGIChannel, peer: str) -> None:
        if channel.hung_up:
            return
        try:
            await asyncio.wait_for(announce.announce_failure(channel, self.settings, self.fallback_destination()),
                                   FAILURE_SEND_TIMEOUT)
        except (TimeoutError, AGIError, OSError) as exc:
            log.warning("agi %s: could not send the fallback variables (%s)", peer, str(exc) or "timeout")
