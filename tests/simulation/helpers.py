"""Hand-built traffic for scenarios whose ground truth is stated line by line."""

from __future__ import annotations

import datetime as dt

from astertrack.simulation.generate import DEFAULT_START, Call, Event, Traffic, Visit, caller_number
from astertrack.simulation.model import TrafficModel

T0 = DEFAULT_START


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def traffic(visits: list[tuple[float, float, str | None]], calls: list[tuple[float, int]],
            heartbeat: int = 60, model: TrafficModel | None = None) -> Traffic:
    """``visits``: (start s, end s, utm_source), each a normal visit with heartbeats and an unload;
    ``calls``: (at s, visit index), each a call dialling the number that visit was shown last."""
    built, events, made = [], [], []
    for index, (start, end, source) in enumerate(visits):
        built.append(Visit(index, index, at(start), at(end), 1, False, False, "normal", source, f"p{index}"))
        events.append(Event(at(start), "start", index))
        beat = start + heartbeat
        while beat < end:
            events.append(Event(at(beat), "ping", index))
            beat += heartbeat
        events.append(Event(at(end), "leave", index))
    for index, (when, visit) in enumerate(calls):
        timing = "during" if when <= visits[visit][1] else "after"
        made.append(Call(index, at(when), caller_number(visit), visit, timing))
        events.append(Event(at(when), "call", visit, call=index))
    events.sort(key=Event.key)
    until = max(event.at for event in events) + dt.timedelta(seconds=1)
    return Traffic(model or TrafficModel(), T0, until, 0, tuple(built), tuple(made), tuple(events))
