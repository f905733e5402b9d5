"""Validation of the structured settings (source rules, routing matches, working hours,
destinations) with messages an admin can act on, in the admin's language.  What is valid is what
the engine reads: source conditions go through ``astertrack.dni.sources.parse_conditions``,
schedules through ``astertrack.routing.schedule.validate``, destinations through
``astertrack.routing.rules.parse_destination``, routing-rule keys come from ``rules.MATCH_KEYS``.
The admin is stricter only where the engine would accept something it then cannot use (an empty
regex value, a destination kind the dialplan has no branch for, a break outside the day's hours).

Each function takes what one input (or one builder row) holds and returns the stored value, or
raises ``ValueError`` with the translated message that is shown beside that input."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask_babel import gettext as _

from astertrack.dni import sources
from astertrack.phones import PhoneNumberError, normalize
from astertrack.routing import rules
from astertrack.routing import schedule as hours

ENDPOINT = re.compile(r"^[A-Za-z0-9]{2,10}/[A-Za-z0-9_.@+-]{1,80}$")
# What each destination kind's dialplan application can take, beyond the engine's safe character set.
DESTINATION_TARGETS = {
    "dial": re.compile(r"^[A-Za-z0-9]{2,10}/[^&/]+(&[A-Za-z0-9]{2,10}/[^&/]+)*$"),  # Dial(PJSIP/101&PJSIP/102)
    "queue": re.compile(r"^[A-Za-z0-9_.-]+$"),  # Queue(sales)
    "voicemail": re.compile(r"^[A-Za-z0-9_.-]+(@[A-Za-z0-9_.-]+)?$"),  # VoiceMail(100@default)
    "context": re.compile(r"^[A-Za-z0-9_.-]+$"),  # Goto(ivr-main,s,1)
}
DESTINATION_EXAMPLES = {"dial": "dial:PJSIP/200", "queue": "queue:sales", "voicemail": "voicemail:100@default",
                        "context": "context:ivr-main"}
TAG = re.compile(r"^[^\x00-\x1f<>]{1,40}$")
TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(:[0-5]\d(\.\d+)?)?$")  # what <input type=time> sends
MAX_VALUE = 200  # one condition's or match row's text
DAY_MINUTES = 24 * 60


# ------------------------------------------------------------------ source rules (dni.sources)


def condition(field: str, op: str, value: str) -> dict[str, str]:
    """One source condition as ``astertrack.dni.sources`` reads it; present/absent keep no value
    (the engine ignores it)."""
    if field not in sources.MATCH_FIELDS:
        raise ValueError(_("Choose what to match."))
    if op not in sources.OPS:
        raise ValueError(_("Choose how to compare."))
    if op in sources.VALUELESS_OPS:
        item = {"field": field, "op": op}
    else:
        value = (value or "").strip()
        if not value:
            raise ValueError(_("Enter the value to compare with."))
        if len(value) > MAX_VALUE:
            raise ValueError(_("At most %(n)s characters.", n=MAX_VALUE))
        if op == "regex":
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(_("Bad regular expression: %(error)s", error=str(exc))) from None
        item = {"field": field, "op": op, "value": value}
    sources.parse_conditions([item])  # the engine's own reading must agree
    return item


# ------------------------------------------------------------------ routing matches (routing.rules)


def match_value(key: str, raw: str) -> Any:
    """One value of a routing-rule match key; ``source_ids`` values are checked by the builder
    against the sources offered."""
    if key not in rules.MATCH_KEYS:
        raise ValueError(_("Choose what to match."))
    if key == "vip":
        return True
    raw = (raw or "").strip()
    if not raw:
        raise ValueError(_("Enter the value to compare with."))
    if len(raw) > MAX_VALUE:
        raise ValueError(_("At most %(n)s characters.", n=MAX_VALUE))
    if key in ("dids", "caller_numbers"):
        return phone(raw)
    return raw


# ------------------------------------------------------------------ working hours (routing.schedule)


def minutes(raw: str) -> int:
    match = TIME.match((raw or "").strip())
    if not match:
        raise ValueError(_("Enter a time such as 09:00."))
    return int(match.group(1)) * 60 + int(match.group(2))


def clock(value: int) -> str:
    return "24:00" if value == DAY_MINUTES else f"{value // 60:02d}:{value % 60:02d}"


def day_spans(start: str, end: str, breaks: list[tuple[str, str]]) -> list[list[str]]:
    """A working day (from-to, minus breaks) as the ``[start, end]`` spans ``routing.schedule``
    reads.  An end of 00:00 is midnight (stored ``24:00``); an end before the start runs past
    midnight (its breaks must then fall before midnight)."""
    first, last = minutes(start), minutes(end)
    if last == 0:
        last = DAY_MINUTES
    if first == last:
        raise ValueError(_("The day starts and ends at the same time."))
    overnight = last < first
    limit = DAY_MINUTES if overnight else last
    cuts: list[tuple[int, int]] = []
    for break_from, break_to in breaks:
        a, b = minutes(break_from), minutes(break_to)
        if b == 0:
            b = DAY_MINUTES
        if not first < a < b < limit:
            raise ValueError(_("A break must lie inside the working hours (%(start)s–%(end)s) and end after it "
                               "starts.", start=clock(first), end=clock(limit)))
        if cuts and a < cuts[-1][1]:
            raise ValueError(_("Breaks overlap or are out of order."))
        cuts.append((a, b))
    spans, cursor = [], first
    for a, b in cuts:
        spans.append([clock(cursor), clock(a)])
        cursor = b
    spans.append([clock(cursor), clock(last)])
    hours.validate({"mon": spans})  # the engine's own reading must agree
    return spans


def spans_as_day(spans: Any) -> tuple[str, str, list[tuple[str, str]]] | None:
    """The inverse of ``day_spans``: a stored day as from, to and breaks, or None when the grid
    cannot show it exactly (spans that overlap, or more than one running past midnight)."""
    try:
        pairs = sorted(((hours._minutes(a), hours._minutes(b)) for a, b in spans))
    except (hours.ScheduleError, TypeError, ValueError):
        return None
    if not pairs:
        return None
    shown = (clock(pairs[0][0]), clock(pairs[-1][1]),
             [(clock(pairs[i][1]), clock(pairs[i + 1][0])) for i in range(len(pairs) - 1)])
    try:
        again = day_spans(shown[0], "00:00" if shown[1] == "24:00" else shown[1], shown[2])
    except ValueError:
        return None
    return shown if again == [[clock(a), clock(b)] for a, b in pairs] else None


def holiday(raw: str) -> str:
    try:
        return dt.date.fromisoformat((raw or "").strip()).isoformat()
    except ValueError:
        raise ValueError(_("Enter a date such as 2026-12-31.")) from None


# ------------------------------------------------------------------ single inputs


def timezone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(_("Unknown time zone %(zone)s; choose one from the list, such as Europe/Moscow.",
                           zone=repr(raw))) from None
    return raw


def crm_template(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if urlsplit(raw.replace("{", "").replace("}", "")).scheme not in ("http", "https"):
        raise ValueError(_("Must start with http:// or https://, e.g. https://crm.example.ru/search?phone={phone}"))
    return raw


def endpoint(raw: str) -> str:
    if not ENDPOINT.match(raw):
        raise ValueError(_("Expected a channel technology and resource such as PJSIP/101."))
    return raw


def destination(raw: str) -> str | None:
    """``kind:target`` for a kind the dialplan's fallback branch handles; a bare ``PJSIP/200`` is
    stored as ``dial:PJSIP/200`` (what the engine reads it as)."""
    raw = raw.strip()
    if not raw:
        return None
    kinds = ", ".join(rules.DESTINATION_KINDS)
    kind, sep, _target = raw.partition(":")
    if sep and kind not in rules.DESTINATION_KINDS and re.fullmatch(r"[A-Za-z_]+", kind):
        raise ValueError(_("Unknown kind %(kind)s: the call router only routes %(kinds)s.", kind=repr(kind),
                           kinds=kinds))
    try:
        parsed = rules.parse_destination(raw)
    except rules.DestinationError:
        parsed = None
    pattern = DESTINATION_TARGETS.get(parsed.kind) if parsed else None
    if parsed is None or (pattern is not None and not pattern.match(parsed.target)):
        examples = ", ".join(DESTINATION_EXAMPLES.get(k, k + ":...") for k in rules.DESTINATION_KINDS)
        raise ValueError(_("Expected kind:target with kind one of %(kinds)s, e.g. %(examples)s", kinds=kinds,
                           examples=examples))
    return str(parsed)


def phone(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return normalize(raw)
    except PhoneNumberError:
        raise ValueError(_("%(value)s is not a phone number; enter it as +7 495 123-45-67.",
                           value=repr(raw[:40]))) from None


def phone_list(raw: str) -> list[str]:
    return [phone(part) for part in re.split(r"[\n,;]+", raw or "") if part.strip()]


def text_list(raw: str) -> list[str]:
    return [part.strip() for part in re.split(r"[\n,]+", raw or "") if part.strip()]


def tag_list(raw: str) -> list[str]:
    """Caller tags, one per line or comma-separated; repeats (any case) kept once."""
    tags: list[str] = []
    for tag in text_list(raw):
        if not TAG.match(tag):
            raise ValueError(_("Tag %(tag)s: 1-40 characters, no < or >.", tag=repr(tag[:40])))
        if tag.casefold() not in {t.casefold() for t in tags}:
            tags.append(tag)
    return tags
