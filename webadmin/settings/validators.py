"""Validation of the structured settings (JSON rules, schedules, destinations) with messages an
admin can act on.  What is valid is what the engine reads: source rules go through
``astertrack.dni.sources.parse_conditions``, schedules through ``astertrack.routing.schedule.validate``,
destinations through ``astertrack.routing.rules.parse_destination``, routing-rule keys come from
``rules.MATCH_KEYS``.  The admin is stricter only where the engine would accept something it then
cannot use (an empty regex value, a destination kind the dialplan has no branch for)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


def parse_json(raw: str, empty: Any) -> Any:
    raw = (raw or "").strip()
    if not raw:
        return empty
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def match_rules(raw: str) -> list[dict[str, str]]:
    """A source's conditions, as ``astertrack.dni.sources`` reads them (a rule it could not read
    would make the tracker skip the whole source)."""
    items = parse_json(raw, [])
    if not isinstance(items, list):
        raise ValueError('expected a list such as [{"field": "utm_source", "op": "equals", "value": "yandex"}]')
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict) or set(item) - {"field", "op", "value"}:
            raise ValueError(f"rule {i}: use only the keys field, op, value")
        if item.get("field") not in sources.MATCH_FIELDS:
            raise ValueError(f"rule {i}: field must be one of {', '.join(sources.MATCH_FIELDS)}")
        if item.get("op", "equals") not in sources.OPS:
            raise ValueError(f"rule {i}: op must be one of {', '.join(sources.OPS)}")
        op = item.get("op", "equals")
        if op not in sources.VALUELESS_OPS and (not isinstance(item.get("value"), str) or not item["value"]):
            raise ValueError(f"rule {i}: value must be non-empty text")
        if op == "regex":
            try:
                re.compile(item["value"])
            except re.error as exc:
                raise ValueError(f"rule {i}: bad regular expression: {exc}") from None
    sources.parse_conditions(items)  # the engine's own reading must agree
    return items


def schedule(raw: str) -> dict[str, list[Any]]:
    value = parse_json(raw, {})
    if not isinstance(value, dict):
        raise ValueError('expected an object such as {"mon": [["09:00", "18:00"]], "closed_dates": ["2026-12-31"]}')
    for key, items in value.items():
        if not isinstance(items, list):
            raise ValueError(f"{key}: expected a list")
        if key in hours.DAYS:
            for span in items:
                if isinstance(span, list) and len(span) == 2 and span[0] == span[1]:
                    raise ValueError(f"{key}: {span!r} is empty (start equals end; an end before the start "
                                     f"spans midnight)")
    try:
        hours.validate(value)
    except hours.ScheduleError as exc:
        raise ValueError(str(exc)) from None
    except (TypeError, ValueError):
        raise ValueError('expected {"mon": [["09:00", "18:00"]]} pairs of "HH:MM" times') from None
    return value


def routing_match(raw: str) -> dict[str, Any]:
    value = parse_json(raw, {})
    if not isinstance(value, dict):
        raise ValueError('expected an object such as {"source_ids": [1, 2], "utm_campaign": ["brand"]}')
    for key, items in value.items():
        if key not in rules.MATCH_KEYS:
            raise ValueError(f"unknown key {key!r}; use {', '.join(rules.MATCH_KEYS)}")
        if key == "vip":
            if not isinstance(items, bool):
                raise ValueError("vip: expected true or false")
            continue
        if not isinstance(items, list) or not items:
            raise ValueError(f"{key}: expected a non-empty list")
        if key == "source_ids" and not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            raise ValueError("source_ids: expected numbers (source ids)")
        if key in ("dids", "caller_numbers"):
            value[key] = [normalize(str(i)) for i in items]
        elif key != "source_ids" and not all(isinstance(i, str) and i.strip() for i in items):
            raise ValueError(f"{key}: expected non-empty texts")
    return value


def timezone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {raw!r}; use a name such as Europe/Moscow") from None
    return raw


def crm_template(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if urlsplit(raw.replace("{", "").replace("}", "")).scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://, e.g. https://crm.example.ru/search?phone={phone}")
    return raw


def endpoint(raw: str) -> str:
    if not ENDPOINT.match(raw):
        raise ValueError("expected a channel technology and resource such as PJSIP/101")
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
        raise ValueError(f"unknown kind {kind!r}: the call router only routes {kinds}")
    try:
        parsed = rules.parse_destination(raw)
    except rules.DestinationError:
        parsed = None
    pattern = DESTINATION_TARGETS.get(parsed.kind) if parsed else None
    if parsed is None or (pattern is not None and not pattern.match(parsed.target)):
        examples = ", ".join(DESTINATION_EXAMPLES.get(k, k + ":...") for k in rules.DESTINATION_KINDS)
        raise ValueError(f"expected kind:target with kind one of {kinds}, e.g. {examples}")
    return str(parsed)


def phone(raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return normalize(raw)
    except PhoneNumberError as exc:
        raise ValueError(str(exc)) from None


def phone_list(raw: str) -> list[str]:
    return [phone(part) for part in re.split(r"[\n,;]+", raw or "") if part.strip()]


def text_list(raw: str) -> list[str]:
    return [part.strip() for part in re.split(r"[\n,]+", raw or "") if part.strip()]


def tag_list(raw: str) -> list[str]:
    """Caller tags, one per line or comma-separated; repeats (any case) kept once."""
    tags: list[str] = []
    for tag in text_list(raw):
        if not TAG.match(tag):
            raise ValueError(f"tag {tag[:40]!r}: 1-40 characters, no < or >")
        if tag.casefold() not in {t.casefold() for t in tags}:
            tags.append(tag)
    return tags
