"""The listener: connection -> one ordered queue -> call state machine -> writer, plus resync and the sweeper.

Exactly one consumer task applies events, in the order they were read from the socket (the
connection hands over each read as one list).  The state machine is pure and fast; everything slow
(the database) happens in the writer thread.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid

from sqlalchemy.orm import Session, sessionmaker

from astertrack.callflow.ami_parse import TRACKED_EVENTS
from astertrack.callflow.listener_status import DISCONNECTED, STOPPED
from astertrack.callflow.state_machine import CallStateMachine
from astertrack.config import Config

from .callbacks import CallbackWorker
from .connection import AmiConnection
from .leads_step import LeadsFromCalls
from .writer import OP_GAP, OP_HEARTBEAT, OP_RECONCILE, OP_STATUS, OP_SWEEP_DB, CallWriter

log = logging.getLogger(__name__)

RESYNC_GRACE = 5.0  # a DB row younger than this at resync may belong to a call we have not seen yet
QUEUE_HIGH, QUEUE_LOW = 8, 2  # socket reads waiting for the consumer: pause/resume reading
WRITER_HIGH = 5_000  # ops waiting for the database before the consumer waits too
RECONCILE_INTERVAL = 2.0  # seconds between reads of Asterisk's CDR file (and status heartbeats)


def state_machine_from_config(config: Config) -> CallStateMachine:
    """The state machine settings live in one place so that rebuild derives exactly what the live run did."""
    ami = config.values["ami"]
    rec = config.values["recordings"]
    contexts = [c.strip() for c in ami["inbound_contexts"].split(",")]
    return CallStateMachine(recordings_dir=rec["dir"], recording_format=rec["format"], inbound_contexts=contexts)


class AmiListener:
    def __init__(self, config: Config, session_factory: sessionmaker[Session]):
        ami = config.values["ami"]
        self.config = config
        self.node = config.values["general"]["node"]
        self.orphan_timeout = float(ami["orphan_timeout"])
        self.sweep_interval = float(ami["sweep_interval"])
        self.machine = state_machine_from_config(config)
        self.writer = CallWriter(session_factory, self.node, store_raw_events=ami["store_raw_events"],
                                 region=config.values["general"]["default_region"],
                                 cdr_file=ami["cdr_file"], cdr_wait=ami["cdr_wait"])
        self.leads = LeadsFromCalls(session_factory, config.values["general"]["default_region"])
        self.queue: asyncio.Queue[list[dict]] = asyncio.Queue()
        self.connection = AmiConnection(
            host=ami["host"], port=ami["port"], username=ami["username"], secret=ami["secret"],
            sink=self.enqueue, on_login=self._on_login, on_lost=self._on_lost, on_state=self.report_state,
            ping_interval=ami["ping_interval"], pong_timeout=ami["pong_timeout"],
            reconnect_max_delay=ami["reconnect_max_delay"], connect_timeout=ami["connect_timeout"],
            keep_events=TRACKED_EVENTS)
        self.callbacks = CallbackWorker(config, session_factory, self.connection, self.node)
        self.events_applied = 0
        self.bad_events = 0
        self.resyncs = 0
        self._resync_id: str | None = None
        self._resync_channels: list[dict] = []
        self._resync_started: float = 0.0
        self._seen_since_resync: set[str] = set()  # uniqueids with events while a resync is pending
        self._stopping = False
        self._paused = False

    # ------------------------------------------------------------------ the ordered path

    def enqueue(self, events: list[dict]) -> None:
        """The connection's callback: only enqueue (one list per socket read keeps the order)."""
        self.queue.put_nowait(events)
        if not self._paused and self.queue.qsize() > QUEUE_HIGH:
            self._paused = True
            self.connection.pause_reading()

    async def consume(self) -> None:
        while True:
            batch = await self.queue.get()
            try:
                self.apply(batch, time.time())
            except Exception:  # one bad event must not stop the listener
                log.exception("could not apply %d AMI events", len(batch))
            finally:
                self.queue.task_done()
            while self.writer.queue.qsize() > WRITER_HIGH:  # the database is behind: wait for it
                await asyncio.sleep(0.005)
            if self._paused and self.queue.qsize() < QUEUE_LOW:
                self._paused = False
                self.connection.resume_reading()

    def apply(self, batch: list[dict], now: float) -> None:
        machine = self.machine
        resync_id = self._resync_id
        for msg in batch:
            if resync_id is not None:
                if msg.get("ActionID") == resync_id:
                    self._resync_message(msg, now)
                    resync_id = self._resync_id
                    continue
                uid = msg.get("Uniqueid")
                if uid:
                    self._seen_since_resync.add(uid)
            try:
                machine.feed(msg, now)
            except Exception:  # a malformed event must not take the rest of the batch with it
                self.bad_events += 1
                log.exception("could not apply AMI event %.300r", msg)
        self.events_applied += len(batch)
        ops = machine.drain()
        if ops:
            self.writer.submit(ops)

    def _resync_message(self, msg: dict, now: float) -> None:
        name = msg.get("Event")
        if name == "CoreShowChannel":
            self._resync_channels.append(msg)
        elif name == "CoreShowChannelsComplete":
            synthetic = self.machine.resync(self._resync_channels, now, seen_since_asked=self._seen_since_resync)
            live = set(self.machine.groups) | set(self.machine.channels)
            live |= {m.get(k) for m in self._resync_channels for k in ("Linkedid", "Uniqueid")}
            self.writer.submit(self.machine.drain())
            cutoff = dt.datetime.fromtimestamp(self._resync_started - RESYNC_GRACE, dt.UTC)
            self.writer.submit([(OP_SWEEP_DB, live, cutoff, dt.datetime.now(dt.UTC), "not live after AMI resync")])
            log.info("resync: %d live channels, %d closed as gone", len(self._resync_channels), len(synthetic))
            self._resync_channels = []
            self._seen_since_resync = set()
            self._resync_id = None
            self.resyncs += 1

    # ------------------------------------------------------------------ session events

    async def _on_login(self, connection: AmiConnection, down_since: float) -> None:
        now = time.time()
        reason = "listener start" if connection.logins == 1 else "reconnected after connection loss"
        self.writer.submit([(OP_GAP, dt.datetime.fromtimestamp(down_since, dt.UTC),
                             dt.datetime.fromtimestamp(now, dt.UTC), reason)])
        self._resync_id = f"astertrack-resync-{uuid.uuid4().hex[:12]}"
        self._resync_channels = []
        self._seen_since_resync = set()
        self._resync_started = now
        connection.send_action({"Action": "CoreShowChannels", "ActionID": self._resync_id})

    def _on_lost(self, when: float, reason: str) -> None:
        log.warning("AMI session lost (%s); events until the next login are not seen", reason)

    def report_state(self, state: str, when: float, error: str | None = None, *, restarted: bool = False) -> None:
        """Record where the listener stands (``ami_listener_status``), through the writer's queue."""
        self.writer.submit([(OP_STATUS, state, dt.datetime.fromtimestamp(when, dt.UTC), error, restarted)])

    # ------------------------------------------------------------------ sweeper

    async def sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            self.sweep(time.time())

    def sweep(self, now: float) -> None:
        """Close calls silent for longer than ``orphan_timeout``, in memory and in the database."""
        self.machine.sweep(now, self.orphan_timeout)
        ops = self.machine.drain()
        cutoff = dt.datetime.fromtimestamp(now - self.orphan_timeout, dt.UTC)
        ops.append((OP_SWEEP_DB, set(self.machine.groups) | set(self.machine.channels), cutoff, dt.datetime.now(dt.UTC),
                    f"in progress longer than {self.orphan_timeout:.0f} s"))
        self.writer.submit(ops)

    async def reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_INTERVAL)
            self.reconcile(time.time())

    def reconcile(self, now: float) -> None:
        """Ask the writer to read new CDR lines and finish the calls a gap touched (not the live ones),
        and to renew the heartbeat that tells the admin this process is alive."""
        live = set(self.machine.groups) | set(self.machine.channels)
        self.writer.submit([(OP_RECONCILE, live, now), (OP_HEARTBEAT, dt.datetime.fromtimestamp(now, dt.UTC))])
        self.leads.schedule()  # finished inbound calls become enquiries (ami_listener/leads_step.py)
        self.callbacks.tick(now)  # due callbacks: settle, claim, Originate (ami_listener/callbacks.py)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Run until stopped; raises ``AmiAuthError`` if Asterisk refuses the login."""
        self.writer.start()
        self.report_state(DISCONNECTED, time.time(), restarted=True)
        consumer = asyncio.create_task(self.consume(), name="ami-consumer")
        sweeper = asyncio.create_task(self.sweep_forever(), name="ami-sweeper")
        reconciler = asyncio.create_task(self.reconcile_forever(), name="ami-reconciler")
        error: str | None = None
        try:
            await self.connection.run()
        except Exception as exc:  # AmiAuthError, or a bug: the admin sees why the listener stopped
            error = str(exc) or exc.__class__.__name__
            raise
        finally:
            sweeper.cancel()
            reconciler.cancel()
            await self._drain_queue()
            consumer.cancel()
            await asyncio.gather(consumer, sweeper, reconciler, return_exceptions=True)
            self.report_state(STOPPED, time.time(), error)
            await asyncio.to_thread(self.writer.flush)
            self.writer.stop()

    async def _drain_queue(self) -> None:
        try:
            await asyncio.wait_for(self.queue.join(), 30)
        except TimeoutError:
            log.error("stopped with %d unapplied AMI batches", self.queue.qsize())

    def stop(self) -> None:
        self._stopping = True
        self.connection.stop()

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until every event read so far is applied and stored (tests, benchmarks)."""
        await asyncio.wait_for(self.queue.join(), timeout)
        await asyncio.to_thread(self.writer.flush, timeout)
