"""Working hours: is a manager or a routing rule open at a given moment?

A schedule is a dict keyed by weekday (``mon`` .. ``sun``) with lists of ``[start, end]``
times in the site's time zone::

    {"mon": [["09:00", "13:00"], ["14:00", "18:00"]], "sat": [["10:00", "14:00"]],
     "closed_dates": ["2026-12-31"]}

An empty schedule means "always open".  A weekday that is absent is closed (when any
weekday is given).  ``end`` before ``start`` spans midnight (``["22:00", "02:00"]``), and the
early-morning part belongs to the day the range started on.  ``"24:00"`` is allowed as an
end.  Pure functions: no database, no clock (the caller passes ``when``).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


class ScheduleError(ValueError):
    """A schedule is malformed; the message says which entry."""


@functools.lru_cache(maxsize=64)
def zone(name: str | None) -> dt.tzinfo:
    """The site's time zone, UTC when unknown (a bad zone must not stop a call)."""
    if not name:
        return dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.UTC


def _minutes(text: str) -> int:
    match = _TIME.match(str(text).strip())
    if not match:
        raise ScheduleError(f"not a time of day: {text!r} (expected HH:MM)")
    value = int(match.group(1)) * 60 + int(match.group(2))
    if value > 24 * 60:
        raise ScheduleError(f"not a time of day: {text!r}")
    return value


def validate(schedule: Mapping[str, Any] | None) -> None:
    """Raise ScheduleError for anything :func:`is_open` could not read (for admin forms)."""
    for key, ranges in (schedule or {}).items():
        if key == "closed_dates":
            for day in ranges:
                try:
                    dt.date.fromisoformat(str(day))
                except ValueError:
                    raise ScheduleError(f"closed_dates: not a date: {day!r}") from None
            continue
        if key not in DAYS:
            raise ScheduleError(f"unknown weekday {key!r} (use {', '.join(DAYS)})")
        for pair in ranges:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ScheduleError(f"{key}: expected [start, end], got {pair!r}")
            _minutes(pair[0])
            _minutes(pair[1])


def _day_has(schedule: Mapping[str, Any], day_index: int, minute: int, *, overnight_tail: bool) -> bool:
    for start_text, end_text in schedule.get(DAYS[day_index], ()):
        start, end = _minutes(start_text), _minutes(end_text)
        if start < end:
            if not overnight_tail and start <= minute < end:
                return True
        elif start > end:  # spans midnight
            if overnight_tail and minute < end:
                return True
            if not overnight_tail and minute >= start:
                return True
    return False


def is_open(schedule: Mapping[str, Any] | None, when: dt.datetime, tz: str | None) -> bool:
    """True when ``when`` (aware) falls inside the schedule, read in time zone ``tz``."""
    if not schedule:
        return True
    if when.tzinfo is None:
        raise ValueError("is_open needs an aware datetime")
    local = when.astimezone(zone(tz))
    closed = {str(day) for day in schedule.get("closed_dates", ())}
    weekdays = [key for key in schedule if key in DAYS]
    if not weekdays:  # only closed dates given: open on every other day
        return local.date().isoformat() not in closed
    minute = local.hour * 60 + local.minute
    if local.date().isoformat() not in closed and _day_has(schedule, local.weekday(), minute, overnight_tail=False):
        return True
    yesterday = local.date() - dt.timedelta(days=1)
    if yesterday.isoformat() not in closed:
        return _day_has(schedule, (local.weekday() - 1) % 7, minute, overnight_tail=True)
    return False


def local_day_start(when: dt.datetime, tz: str | None) -> dt.datetime:
    """Midnight of ``when``'s local day, as aware UTC (for "calls today" counts)."""
    local = when.astimezone(zone(tz))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(dt.UTC)
