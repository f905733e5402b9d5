"""The callback worker: on the listener's 2-second tick, dial due callbacks through our AMI session.

Each tick (one at a time): settle finished attempts (``astertrack.leads.callbacks.settle``),
request callbacks for missed calls on sites that want them, claim due requests for this node,
write each attempt's ``Call`` row and send the ``Originate``.  The call itself is followed by the
ordinary state machine (the originated channel carries ``CT_CALL_ID``); an Originate that made
no channel at all is finished here from its ``OriginateResponse``.  Database work runs in a
thread, as the writer's does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from astertrack.callflow.outcomes import ORIGINATE_BUSY, ORIGINATE_NO_ANSWER, MissedReason
from astertrack.config import Config
from astertrack.db.engine import begin_write, session_scope
from astertrack.db.models import Call, CallbackRequest, Site, Source, VisitorSession, new_uid
from astertrack.leads import callbacks as cb
from astertrack.routing import dialplan_vars as dv
from astertrack.routing import reservations
from astertrack.routing.recording import recording_name

from .connection import AmiConnection, AmiConnectionError

log = logging.getLogger(__name__)

MISSED_CALL_LOOKBACK = dt.timedelta(hours=1)  # a missed call older than this is not called back any more
NO_CHANNEL_GRACE = 3.0  # seconds the state machine gets to finish a failed Originate's channel itself
_UNSAFE_NAME = re.compile(r'["<>\\\r\n;]')


@dataclass(frozen=True)
class Attempt:
    request_id: int
    call_uid: str
    channel_id: str
    endpoint: str
    exten: str
    caller_id: str
    variables: dict[str, str]


def caller_id_for(site_name: str | None, phone: str) -> str:
    """``"callback from <site>" <visitor>``: the manager's phone shows who is called back."""
    name = _UNSAFE_NAME.sub("", f"callback from {site_name}" if site_name else "callback")[:60]
    return f'"{name}" <{phone}>'


class CallbackWorker:
    def __init__(self, config: Config, session_factory: sessionmaker[Session], connection: AmiConnection, node: str):
        self.enabled = bool(config.values["callbacks"]["enabled"])
        self.settings = cb.CallbackSettings.from_config(config.values)
        self.recording_format = config.values["recordings"]["format"]
        self.region = config.values["general"]["default_region"]
        self.factory = session_factory
        self.connection = connection
        self.node = node
        self.no_channel: dict[str, tuple[float, str]] = {}  # call_uid -> (when, reason): Originate failed early
        self._task: asyncio.Task | None = None
        self.originated = 0

    # ------------------------------------------------------------------ the tick

    def tick(self, now: float) -> None:
        """The listener's hook: start a round unless the previous one still runs."""
        if not self.enabled or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.ensure_future(self.run_once(now))

    async def run_once(self, now: float) -> None:
        try:
            # while Asterisk is not followed nothing is dialled (an attempt would only burn a retry)
            dial = self.connection.protocol is not None
            attempts = await asyncio.to_thread(self.prepare, dt.datetime.fromtimestamp(now, dt.UTC), dial)
            for attempt in attempts:
                await self.originate(attempt)
        except Exception:  # a bad round must not stop the listener; the next tick tries again
            log.exception("callback round failed")

    async def stop(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    # ------------------------------------------------------------------ database side

    def prepare(self, now: dt.datetime, dial: bool = True) -> list[Attempt]:
        with session_scope(self.factory) as session:
            begin_write(session)
            self._settle(session, now)
            self._missed_calls(session, now)
            if not dial:
                return []
            return [a for a in (self._start(session, rid, now) for rid in cb.due_ids(session, now)) if a]

    def _settle(self, session: Session, now: dt.datetime) -> None:
        for request in session.query(CallbackRequest).filter(CallbackRequest.state == "dialing",
                                                             CallbackRequest.node == self.node):
            call = session.get(Call, request.call_id) if request.call_id else None
            if call is None:
                cb.settle(session, request, None, self.settings, now, MissedReason.FAILED)
                continue
            failed = self.no_channel.get(call.call_uid)
            if call.state != "finished" and failed and time.time() - failed[0] >= NO_CHANNEL_GRACE:
                self._finish_unplaced(session, call, failed[1], now)
            elif call.state != "finished" and request.claimed_until and request.claimed_until < now:
                if call.state == "up":  # talking: keep the claim while the call lasts
                    request.claimed_until = now + self._lease()
                    continue
                self._finish_unplaced(session, call, MissedReason.FAILED, now)
            if call.state != "finished":
                continue
            self.no_channel.pop(call.call_uid, None)
            reservations.release(session, call.call_uid)
            verdict = cb.settle(session, request, call, self.settings, now)
            log.info("callback %s attempt %d: %s -> %s", request.id, request.attempts, verdict.last_result,
                     verdict.state)

    def _finish_unplaced(self, session: Session, call: Call, reason: str, now: dt.datetime) -> None:
        call.state, call.outcome, call.missed_reason = "finished", "missed", str(reason)
        call.ended_at, call.closed_by = now, "events"
        call.wait_seconds = max(0.0, (now - call.started_at).total_seconds()) if call.started_at else None
        call.talk_seconds = 0.0

    def _missed_calls(self, session: Session, now: dt.datetime) -> None:
        for call in cb.missed_calls_to_call_back(session, self.node, now - MISSED_CALL_LOOKBACK):
            try:
                cb.request_callback(session, session.get(Site, call.site_id), call.caller_number,
                                    "missed_call_callback", missed_call=call, now=now, settings=self.settings,
                                    region=self.region)
            except cb.CallbackError as exc:
                log.warning("missed call %s not called back: %s", call.id, exc)

    def _lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=2 * self.settings.originate_timeout + 60)

    def _start(self, session: Session, request_id: int, now: dt.datetime) -> Attempt | None:
        if not cb.claim(session, request_id, self.node, now, self._lease()):
            return None  # another node took it
        request = session.get(CallbackRequest, request_id)
        session.refresh(request)
        call_uid = new_uid()
        choice = cb.choose_manager(session, request, call_uid, now, self.settings.originate_timeout + 30)
        request.attempts += 1
        if choice is None:
            cb.settle(session, request, None, self.settings, now, cb.NO_FREE_MANAGER)
            return None
        site = session.get(Site, request.site_id) if request.site_id else None
        missed = session.get(Call, request.missed_call_id) if request.missed_call_id else None
        visit = session.get(VisitorSession, request.session_id) if request.session_id else None
        recording = recording_name(call_uid, now)
        channel_id = f"cb-{call_uid}"
        call = Call(call_uid=call_uid, node=self.node, linkedid=channel_id, uniqueid=channel_id,
                    site_id=request.site_id, caller_number=request.phone, started_at=now, state="ringing",
                    routed_manager_id=choice.manager.id, routed_by="callback", routing_attempts=1,
                    routing_rule_id=choice.rule.id if choice.rule and choice.rule.id else None,
                    routing_tried=[choice.manager.id], recording_path=f"{recording}.{self.recording_format}",
                    lead_channel=request.kind, is_first_call=False)
        self._attribute(call, visit, missed)
        session.add(call)
        session.flush()
        request.call_id = call.id
        source = session.get(Source, call.source_id) if call.source_id else None
        variables = {dv.CALL_ID: call_uid, dv.CALLBACK_ID: str(request.id), dv.LEAD_CHANNEL: request.kind,
                     dv.MANAGER: choice.manager.endpoint, dv.RECORDING: recording,
                     dv.TIMEOUT: str(self.settings.originate_timeout), dv.ROUTED_BY: "callback"}
        if source is not None:
            variables[dv.SOURCE] = _UNSAFE_NAME.sub("", source.name)[:100]
        if call.utm_campaign:
            variables[dv.CAMPAIGN] = _UNSAFE_NAME.sub("", call.utm_campaign)[:100]
        return Attempt(request_id=request.id, call_uid=call_uid, channel_id=channel_id,
                       endpoint=choice.manager.endpoint, exten=request.phone.lstrip("+"),
                       caller_id=caller_id_for(site.name if site else None, request.phone), variables=variables)

    @staticmethod
    def _attribute(call: Call, visit: VisitorSession | None, missed: Call | None) -> None:
        """The callback carries the attribution of the visit (or of the missed call) it answers."""
        if missed is not None:
            for name in ("source_id", "session_id", "attribution_kind", "attribution_confidence", "utm_source",
                         "utm_medium", "utm_campaign", "keyword", "did"):
                setattr(call, name, getattr(missed, name))
        if visit is not None:
            call.session_id, call.source_id = visit.id, visit.source_id or call.source_id
            call.utm_source, call.utm_medium = visit.utm_source, visit.utm_medium
            call.utm_campaign, call.keyword = visit.utm_campaign, visit.keyword or visit.utm_term
            call.attribution_kind = call.attribution_kind or "session"

    # ------------------------------------------------------------------ the AMI side

    async def originate(self, attempt: Attempt) -> None:
        try:
            future = await self.connection.originate(
                channel=attempt.endpoint, context=self.settings.context, exten=attempt.exten,
                caller_id=attempt.caller_id, timeout=self.settings.originate_timeout, variables=attempt.variables,
                action_id=f"{dv.CALLBACK_ACTION_PREFIX}{attempt.call_uid}", channel_id=attempt.channel_id)
        except AmiConnectionError as exc:
            log.warning("callback %s: %s", attempt.request_id, exc)
            self.no_channel[attempt.call_uid] = (0.0, MissedReason.FAILED)
            return
        self.originated += 1
        future.add_done_callback(lambda f, uid=attempt.call_uid: self._originate_result(uid, f))

    def _originate_result(self, call_uid: str, future: asyncio.Future) -> None:
        """A failed Originate: remember why, for a call whose channel never shows up in events."""
        if future.cancelled() or future.exception() is not None:
            self.no_channel[call_uid] = (time.time(), MissedReason.FAILED)
            return
        replies = future.result()
        final = replies[-1] if isinstance(replies, list) else replies
        if final.get("Response") == "Success":
            return
        reason = final.get("Reason", "")
        why = (MissedReason.MANAGER_BUSY if reason in ORIGINATE_BUSY
               else MissedReason.MANAGER_NO_ANSWER if reason in ORIGINATE_NO_ANSWER else MissedReason.FAILED)
        self.no_channel[call_uid] = (time.time(), why)

