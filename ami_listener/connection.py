"""The one module that touches panoramisk (1.4): connect, log in, watch, reconnect.

What we take from panoramisk: ``AMIProtocol`` (transport handling, action ids, response futures).
What we do ourselves, because 1.4 gets it wrong:

* **login is checked**: a refused login raises ``AmiAuthError`` (the daemon exits non-zero)
  instead of panoramisk's silent reconnect loop;
* **events bypass panoramisk's parser and dispatcher**: raw bytes go to our ``AmiStreamParser``
  (drops noise early, folds ChanVariable, keeps order) and the whole batch of one read is handed
  to ``sink`` in arrival order; ``sink`` must only enqueue;
* **a Pong deadline**: no Pong within ``pong_timeout`` closes the transport and reconnects;
* **reconnect with capped exponential back-off and jitter**, reported through ``on_lost`` so the
  caller can write a gap marker; ``on_login`` runs after every successful (re)login;
* ``on_state`` hears each step (connected, logged in, disconnected with the reason), so the
  admin can be told when Asterisk is not followed.

An upgrade of panoramisk is local to this file.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from panoramisk.actions import Action
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.message import Message

from astertrack.callflow.ami_parse import TRACKED_EVENTS, AmiStreamParser
from astertrack.callflow.listener_status import CONNECTED, DISCONNECTED, LOGGED_IN
from astertrack.ops import metrics

log = logging.getLogger(__name__)

Sink = Callable[[list[dict]], None]
StateHook = Callable[[str, float, "str | None"], None]  # (state, when, error); must only enqueue


class AmiAuthError(RuntimeError):
    """Asterisk refused our Login: retrying cannot help, so the daemon stops."""


class AmiConnectionError(ConnectionError):
    """The session ended or never started; a retry may help."""


class _Session:
    """What ``AMIProtocol`` expects as its ``factory`` (the Manager), minus the reconnect logic."""

    forgetable_actions = ("ping", "login", "coreshowchannels")

    def __init__(self) -> None:
        self.awaiting_actions: deque = deque()
        self.lost = asyncio.Event()
        self.reason: Any = None

    def dispatch(self, message: Message) -> None:  # events never take this path (see _Protocol)
        pass

    def connection_lost(self, exc: Any) -> None:
        self.reason = exc
        self.lost.set()


class _Protocol(AMIProtocol):
    def __init__(self, sink: Sink, keep_events: frozenset[str] | None):
        self.sink = sink
        self.keep_events = keep_events

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.encoding = "utf8"
        self.factory = _Session()
        self.parser = AmiStreamParser(keep_events=self.keep_events)

    def data_received(self, data: bytes) -> None:
        events: list[dict] = []
        for msg in self.parser.feed(data):
            if msg.get("Event") == "OriginateResponse":  # ends our Originate's future *and* is a call event
                self.handle_message(Message({k: v for k, v in msg.items() if isinstance(v, str)}))
                events.append(msg)
            elif "Response" in msg:
                headers = {k: v for k, v in msg.items() if isinstance(v, str)}
                self.handle_message(Message(headers))
            else:
                events.append(msg)
        if events:
            metrics.ami_events_seen(len(events))
            self.sink(events)
            if any(m.get("Event") == "Shutdown" for m in events):
                log.warning("Asterisk is shutting down; will reconnect")
                self.connection_lost(None)

    def connection_lost(self, exc) -> None:
        lost = self.parser.reset() if hasattr(self, "parser") else 0
        if lost:
            log.warning("connection lost with %d bytes of an unfinished AMI message", lost)
        super().connection_lost(exc)


class AmiConnection:
    """Keeps one logged-in AMI session alive; ``run()`` returns only on ``stop()`` or auth failure."""

    def __init__(self, *, host: str, port: int, username: str, secret: str, sink: Sink,
                 on_login: Callable[[AmiConnection, float], Awaitable[None]] | None = None,
                 on_lost: Callable[[float, str], None] | None = None, on_state: StateHook | None = None,
                 ping_interval: float = 10.0, pong_timeout: float = 5.0, reconnect_max_delay: float = 30.0,
                 connect_timeout: float = 10.0, keep_events: frozenset[str] | None = TRACKED_EVENTS):
        self.host, self.port, self.username, self.secret = host, port, username, secret
        self.sink = sink
        self.on_login = on_login
        self.on_lost = on_lost
        self.on_state = on_state
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self.connect_timeout = connect_timeout
        self.keep_events = keep_events
        self.protocol: _Protocol | None = None
        self.logins = 0
        self._stop = asyncio.Event()
        self._down_since = time.time()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()

    def pause_reading(self) -> None:
        """Back-pressure: stop reading while the consumer catches up (never drop events)."""
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.resume_reading()

    def send_action(self, action: dict[str, Any]) -> asyncio.Future:
        if self.protocol is None:
            raise AmiConnectionError("not connected")
        return self.protocol.send(action)

    async def originate(self, *, channel: str, context: str, exten: str, caller_id: str, timeout: float,
                        variables: dict[str, str], action_id: str, channel_id: str,
                        reply_timeout: float = 10.0) -> asyncio.Future:
        """Send an async ``Originate`` (a callback: ring ``channel``, then run ``context``/``exten``).

        Returns once Asterisk queued it, with a future of its final ``OriginateResponse``
        (panoramisk groups the two under our ActionID).  ``channel_id`` becomes the channel's
        uniqueid, hence the call's linkedid.  Raises ``AmiConnectionError`` when not logged in or
        Asterisk refused the action (e.g. the AMI user lacks ``originate`` rights).
        """
        if self.protocol is None:
            raise AmiConnectionError("not connected")
        action = {"Action": "Originate", "ActionID": action_id, "Channel": channel, "Context": context,
                  "Exten": exten, "Priority": "1", "CallerID": caller_id, "Timeout": str(int(timeout * 1000)),
                  "ChannelId": channel_id, "Async": "true",
                  "Variable": [f"{name}={value}" for name, value in variables.items()]}
        session = self.protocol.factory
        sent = Action(action)
        future = self.protocol.send(sent)
        deadline = time.monotonic() + reply_timeout
        while not sent.responses and not future.done():  # the first reply: queued, or refused
            if session.lost.is_set():
                raise AmiConnectionError("connection lost before the Originate was queued")
            if time.monotonic() > deadline:
                raise AmiConnectionError(f"no Originate response within {reply_timeout:.0f} s")
            await asyncio.sleep(0.02)
        first = sent.responses[0]
        if first.get("Response") != "Success":
            raise AmiConnectionError(f"Originate refused: {first.get('Message') or first.get('Response')}")
        return future

    async def run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                await self._session()
            except AmiAuthError:
                metrics.AMI_LOGIN_FAILURES.inc()
                raise
            except (OSError, TimeoutError, AmiConnectionError) as exc:
                log.warning("AMI %s: %s", self.address, exc or exc.__class__.__name__)
                if not self._stop.is_set():
                    self._state(DISCONNECTED, f"AMI {self.address}: {exc or exc.__class__.__name__}")
            if self._stop.is_set():
                return
            if time.monotonic() - started > 60:
                delay = 0.5  # it was a healthy session; start the back-off over
            wait = delay * random.uniform(0.8, 1.2)
            log.info("reconnecting to AMI %s in %.1f s", self.address, wait)
            try:
                await asyncio.wait_for(self._stop.wait(), wait)
                return
            except TimeoutError:
                pass
            delay = min(self.reconnect_max_delay, delay * 2)

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self.sink, self.keep_events), self.host, self.port),
            self.connect_timeout)
        session: _Session = protocol.factory
        self.protocol = protocol
        self._state(CONNECTED, None)
        logged_in = False
        try:
            reply = await self._reply(protocol.send({"Action": "Login", "Username": self.username,
                                                     "Secret": self.secret, "Events": "on"}),
                                      self.connect_timeout, session, "Login")
            if not reply.success:
                raise AmiAuthError(f"AMI authentication failed for user {self.username!r} at {self.address}: "
                                   f"{reply.get('Message') or reply.get('Response')} "
                                   f"(check [ami] username/secret and manager.conf)")
            logged_in = True
            self.logins += 1
            if self.logins > 1:
                metrics.AMI_RECONNECTS.inc()
            metrics.ami_connected(True)
            self._state(LOGGED_IN, None)
            log.info("logged in to AMI %s as %s (%s)", self.address, self.username, protocol.parser.banner)
            if self.on_login is not None:
                await self.on_login(self, self._down_since)
            await self._watch(protocol, session)
        finally:
            metrics.ami_connected(False)
            if protocol.transport is not None:
                protocol.transport.close()
            self.protocol = None
            if logged_in:
                self._down_since = time.time()
                if self.on_lost is not None:
                    self.on_lost(self._down_since, str(session.reason or "connection closed"))

    def _state(self, state: str, error: str | None) -> None:
        if self.on_state is not None:
            self.on_state(state, time.time(), error)

    async def _watch(self, protocol: _Protocol, session: _Session) -> None:
        """Ping every ``ping_interval``; a missing Pong means a dead peer."""
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(session.lost.wait(), self.ping_interval)
                raise AmiConnectionError(f"connection lost ({session.reason or 'closed by peer'})")
            except TimeoutError:
                pass
            try:
                await self._reply(protocol.send({"Action": "Ping"}), self.pong_timeout, session, "Ping")
            except TimeoutError:
                session.reason = f"no Pong within {self.pong_timeout:.0f} s"
                raise AmiConnectionError(session.reason) from None

    @staticmethod
    async def _reply(future: asyncio.Future, timeout: float, session: _Session, what: str) -> Message:
        lost = asyncio.ensure_future(session.lost.wait())
        try:
            done, _ = await asyncio.wait({future, lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if future in done:
            return future.result()
        if lost in done:
            raise AmiConnectionError(f"connection closed while waiting for the {what} response")
        raise TimeoutError(f"no {what} response within {timeout:.0f} s")
