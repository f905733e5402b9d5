"""Drive a product through a traffic stream on a simulated clock and keep what it decided.

Why the runner holds the visitor's view: a caller dials the number their page showed (or the
one they dialled before), which only the product's answers tell; the ground truth stays in
the traffic.  One clock for everything: each event is handed to the product at its own time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from astertrack.db.engine import make_session_factory
from astertrack.simulation.generate import Traffic, generate
from astertrack.simulation.model import ProductSettings, TrafficModel
from astertrack.simulation.product import Attributed, CoreProduct, Product
from astertrack.simulation.site import populate, scratch_engine

SWEEP_EVERY = dt.timedelta(minutes=5)  # the tracker's maintenance thread sweeps expired holds
WINDOW = dt.timedelta(days=30)  # Site.attribution_window_days of the simulated site (first touch)
Progress = Callable[[int, int], None]  # (events done, events in all)


@dataclass(frozen=True)
class CallResult:
    call: int  # Traffic.calls index
    dialled: str | None
    attributed: Attributed
    truth_sessions: frozenset[str]  # every session the product gave the visit the call belongs to
    truth_visit: int  # that visit: the call's own, or under first touch the visit of the caller's first call


@dataclass
class RunResult:
    settings: ProductSettings
    results: list[CallResult] = field(default_factory=list)
    overflows: int = 0  # human visits shown a number outside the pool (bots never take one)
    sessions: dict[int, set[str]] = field(default_factory=dict)  # visit index -> the product's sessions of it


def run(product: Product, traffic: Traffic, settings: ProductSettings, pool_numbers: frozenset[str] = frozenset(),
        progress: Progress | None = None, clock: Callable[[dt.datetime], None] | None = None) -> RunResult:
    """Every event of ``traffic`` through ``product``; ``clock`` is told each event's time first (the
    real apps' parity test sets their clocks with it)."""
    sids: dict[int, str] = {}
    sessions: dict[int, set[str]] = {}
    shown: dict[int, str | None] = {}
    dialled: dict[int, str | None] = {}
    first_calls: dict[str, tuple[dt.datetime, int]] = {}  # caller -> (first call, its visit) within the window
    out = RunResult(settings, sessions=sessions)
    next_sweep = traffic.start + SWEEP_EVERY
    total = len(traffic.events)
    for done, event in enumerate(traffic.events):
        while event.at >= next_sweep:
            if clock:
                clock(next_sweep)
            product.sweep(next_sweep)
            next_sweep += SWEEP_EVERY
        if clock:
            clock(event.at)
        visit = traffic.visits[event.visit]
        if event.kind == "start":
            first = event.page == 0
            answer = product.start(event.at, visit.fields(), None if first else sids.get(event.visit), first)
            _seen(out, answer.sid, answer.number, event.visit, sids, sessions, shown,
                  frozenset() if visit.is_bot else pool_numbers)
        elif event.kind == "ping" and event.visit in sids:
            answer = product.ping(event.at, sids[event.visit])
            if not answer.live:  # the snippet starts a new session for the open page
                answer = product.start(event.at, visit.fields(), None, False)
            _seen(out, answer.sid, answer.number, event.visit, sids, sessions, shown, pool_numbers)
        elif event.kind == "leave" and event.visit in sids:
            product.leave(event.at, sids[event.visit])
        elif event.kind == "call":
            call = traffic.calls[event.call]
            did = dialled.get(call.repeat_of) if call.repeat_of is not None else shown.get(event.visit)
            dialled[call.index] = did
            found = product.call(event.at, did, call.caller)
            # first touch: a caller seen within the window keeps their first call's visit (the site's model)
            first = first_calls.get(call.caller)
            if first is None or event.at - first[0] > WINDOW:
                first = first_calls[call.caller] = (event.at, event.visit)
            truth = first[1]
            out.results.append(CallResult(call.index, did, found, frozenset(sessions.get(truth, ())), truth))
        if progress and (done % 2000 == 0 or done == total - 1):
            progress(done + 1, total)
    return out


def _seen(out: RunResult, sid: str | None, number: str | None, visit: int, sids: dict[int, str],
          sessions: dict[int, set[str]], shown: dict[int, str | None], pool: frozenset[str]) -> None:
    if sid:
        sids[visit] = sid
        sessions.setdefault(visit, set()).add(sid)
    if number is not None:
        if pool and number not in pool and shown.get(visit) != number:
            out.overflows += 1
        shown[visit] = number


def simulate(model: TrafficModel, settings: ProductSettings, days: float, seed: int = 1,
             progress: Progress | None = None, traffic: Traffic | None = None) -> tuple[Traffic, RunResult]:
    """One run on a fresh scratch database through ``CoreProduct``."""
    traffic = traffic or generate(model, settings, days, seed)
    engine = scratch_engine()
    allocation_log = logging.getLogger("astertrack.dni.allocation")
    level = allocation_log.level
    allocation_log.setLevel(logging.WARNING)  # a short simulated pool says "ended stale holds" thousands of times
    try:
        with make_session_factory(engine)() as session:
            site = populate(session, model, settings)
        product = CoreProduct(engine, site.site_id, settings.release_grace_seconds)
        try:
            return traffic, run(product, traffic, settings, frozenset(site.numbers), progress)
        finally:
            product.close()
    finally:
        allocation_log.setLevel(level)
        engine.dispose()
