"""A seeded, deterministic stream of visitor and caller events, with the ground truth kept.

Why a stream decided up front: the same seed must give the same figures whatever pool size
is simulated, so nothing here depends on the product's answers.  What the product decides
(which number a visit was shown) is read by ``run`` at the moment a call is placed.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass

from astertrack.simulation.model import ProductSettings, TrafficModel

# A Monday, midnight local time: the weekly curve starts there.
DEFAULT_START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
TIMINGS = ("during", "after", "written_down", "repeat")
BEHAVIOURS = ("normal", "left_open", "no_unload", "suspended")
HUMAN_UA = {
    False: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    True: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile "
          "Safari/537.36",
}
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
_ORDER = {"start": 0, "ping": 1, "call": 2, "leave": 3}


@dataclass(frozen=True)
class Visit:
    index: int
    person: int
    start: dt.datetime
    end: dt.datetime  # when the visitor left (the tab may stay open longer: ``behaviour``)
    pages: int
    is_bot: bool
    mobile: bool
    behaviour: str  # BEHAVIOURS
    utm_source: str | None  # the ground-truth source (sources are named after it)
    visitor_id: str

    def fields(self) -> dict[str, str | None]:
        """What the snippet sends for the visit's first page."""
        data: dict[str, str | None] = {
            "visitor_id": self.visitor_id, "landing_page": f"https://shop.example/p/{self.index % 97}",
            "user_agent": BOT_UA if self.is_bot else HUMAN_UA[self.mobile],
        }
        if self.utm_source:
            data.update(utm_source=self.utm_source, utm_medium="cpc", utm_campaign=f"{self.utm_source}-main")
        return data


@dataclass(frozen=True)
class Call:
    index: int
    at: dt.datetime
    caller: str  # E.164
    visit: int  # the visit that made the person call: the ground truth
    timing: str  # TIMINGS
    repeat_of: int | None = None  # a repeat call dials the number of this earlier call


@dataclass(frozen=True)
class Event:
    at: dt.datetime
    kind: str  # start|ping|leave|call
    visit: int
    page: int = 0  # start: the page's number within the visit (0: the first)
    call: int | None = None

    def key(self) -> tuple:
        return (self.at, _ORDER[self.kind], self.visit, self.page, -1 if self.call is None else self.call)


@dataclass(frozen=True)
class Traffic:
    model: TrafficModel
    start: dt.datetime
    until: dt.datetime
    seed: int
    visits: tuple[Visit, ...]
    calls: tuple[Call, ...]
    events: tuple[Event, ...]


def caller_number(person: int) -> str:
    """A valid Russian mobile number per simulated person."""
    return f"+7916{person % 10_000_000:07d}"


def _weights(values: tuple[float, ...]) -> list[float]:
    total = sum(values)
    return [value / total for value in values]


def arrivals(model: TrafficModel, rng: random.Random, start: dt.datetime, days: float) -> list[dt.datetime]:
    """First-visit start times: a Poisson process whose rate follows the daily and weekly curves."""
    daily = _weights(model.daily_curve)
    weekly = [w * 7 for w in _weights(model.weekly_curve)]
    offset = dt.timedelta(hours=model.timezone_offset_hours)
    times = []
    hours = math.ceil(days * 24)
    for hour in range(hours):
        hour_start = start + dt.timedelta(hours=hour)
        local = hour_start + offset
        # first visits: the returning ones (``return_visit_share``) make up the rest of visits_per_day
        rate = (model.visits_per_day / (1 + model.return_visit_share)
                * daily[local.hour] * weekly[local.weekday()] / 3600)  # per second
        if rate <= 0:
            continue
        span = min(3600.0, (days * 24 - hour) * 3600)
        t = rng.expovariate(rate)
        while t < span:
            times.append(hour_start + dt.timedelta(seconds=t))
            t += rng.expovariate(rate)
    return times


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, p = math.exp(-mean), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _behaviour(model: TrafficModel, rng: random.Random, mobile: bool) -> str:
    if mobile and rng.random() < model.mobile_suspend_share:
        return "suspended"
    draw = rng.random()
    if draw < model.tab_left_open_share:
        return "left_open"
    if draw < model.tab_left_open_share + model.closed_without_unload_share:
        return "no_unload"
    return "normal"


def generate(model: TrafficModel, settings: ProductSettings, days: float, seed: int = 1,
             start: dt.datetime = DEFAULT_START) -> Traffic:
    """Visits, calls and the events the product sees, for ``days`` from ``start`` (local Monday midnight
    by default, ``model.timezone_offset_hours`` ahead of UTC)."""
    rng = random.Random(seed)
    start = start - dt.timedelta(hours=model.timezone_offset_hours)
    until = start + dt.timedelta(days=days)
    sources = [name for name, _ in model.sources]
    source_weights = [weight for _, weight in model.sources]
    heartbeat = dt.timedelta(seconds=settings.heartbeat_seconds)
    mu = math.log(model.session_median_seconds)
    first_starts = arrivals(model, rng, start, days)
    # returning visitors: a later visit of the same person, with or without the cookie
    people: list[tuple[dt.datetime, int, str, int]] = []  # (start, person, visitor id, visit number)
    for person, at in enumerate(first_starts):
        people.append((at, person, f"v{seed}-{person}", 0))
        if rng.random() < model.return_visit_share:
            later = at + dt.timedelta(days=rng.uniform(0.5, 7.0))
            keeps_cookie = rng.random() >= model.cookie_loss_share
            people.append((later, person, f"v{seed}-{person}" if keeps_cookie else f"v{seed}-{person}-lost", 1))
    people.sort(key=lambda item: (item[0], item[1], item[3]))
    visits: list[Visit] = []
    calls: list[Call] = []
    events: list[Event] = []
    for at, person, visitor_id, _ in people:
        if at >= until:
            continue
        index = len(visits)
        is_bot = rng.random() < model.bot_share
        mobile = rng.random() < model.mobile_share
        duration = max(5.0, rng.lognormvariate(mu, model.session_sigma))
        pages = 1 if is_bot else 1 + _poisson(rng, max(model.pages_per_visit - 1, 0.0))
        behaviour = "no_unload" if is_bot else _behaviour(model, rng, mobile)
        source = rng.choices(sources, source_weights)[0]
        end = at + dt.timedelta(seconds=duration)
        calling = not is_bot and rng.random() < model.caller_share
        call_at = timing = None
        if calling:
            draw = rng.random()
            if draw < model.call_during_share:
                timing, call_at = "during", at + dt.timedelta(seconds=rng.uniform(0.2, 0.95) * duration)
                if behaviour == "suspended":
                    end = call_at  # the phone's dialler backgrounds the browser: its timers stop here
            elif draw < model.call_during_share + model.call_after_share:
                timing = "after"
                call_at = end + dt.timedelta(minutes=rng.expovariate(1 / model.call_after_minutes))
            else:
                timing = "written_down"
                call_at = end + dt.timedelta(days=rng.expovariate(1 / model.written_down_days))
        visits.append(Visit(index, person, at, end, pages, is_bot, mobile, behaviour, source, visitor_id))
        page_times = sorted(at + dt.timedelta(seconds=rng.uniform(1, max(duration - 1, 1.5)))
                            for _ in range(pages - 1))
        events.append(Event(at, "start", index))
        for page, page_at in enumerate(page_times, start=1):
            events.append(Event(page_at - dt.timedelta(milliseconds=500), "leave", index))
            events.append(Event(page_at, "start", index, page=page))
        if not is_bot:
            tab_end = end
            if behaviour == "left_open":
                tab_end = end + dt.timedelta(minutes=rng.expovariate(1 / model.tab_left_open_minutes))
            loads = [at, *page_times]
            for load, next_load in zip(loads, [*loads[1:], tab_end], strict=True):
                beat = load + heartbeat
                while beat < next_load:
                    events.append(Event(beat, "ping", index))
                    beat += heartbeat
            if behaviour in ("normal", "left_open"):
                events.append(Event(tab_end, "leave", index))
        if call_at is not None and call_at < until:
            call = Call(len(calls), call_at, caller_number(person), index, timing)
            calls.append(call)
            events.append(Event(call_at, "call", index, call=call.index))
            if rng.random() < model.repeat_caller_share:
                again = call_at + dt.timedelta(days=rng.expovariate(1 / model.repeat_after_days))
                if again < until:
                    repeat = Call(len(calls), again, call.caller, index, "repeat", repeat_of=call.index)
                    calls.append(repeat)
                    events.append(Event(again, "call", index, call=repeat.index))
    events = [event for event in events if event.at < until]
    events.sort(key=Event.key)
    return Traffic(model, start, until, seed, tuple(visits), tuple(calls), tuple(events))
