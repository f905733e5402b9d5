"""Validation of the structured settings (JSON rules and schedules) with messages an admin can act on."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from astertrack.phones import PhoneNumberError, normalize

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RULE_OPS = ("equals", "contains", "prefix", "regex")
RULE_FIELD = re.compile(r"^[a-z_]{2,40}$")
ROUTING_MATCH_KEYS = ("dids", "source_ids", "utm_campaign", "landing_contains", "caller_numbers", "caller_tags")
ENDPOINT = re.compile(r"^[A-Za-z0-9]{2,10}/[A-Za-z0-9_.@+-]{1,80}$")
DESTINATION = re.compile(r"^(queue|voicemail|dial|hangup|goto):[A-Za-z0-9_.@/,+&-]{0,190}$")
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


def parse_json(raw: str, empty: Any) -> Any:
    raw = (raw or "").strip()
    if not raw:
        return empty
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def match_rules(raw: str) -> list[dict[str, str]]:
    rules = parse_json(raw, [])
    if not isinstance(rules, list):
        raise ValueError('expected a list such as [{"field": "utm_source", "op": "equals", "value": "yandex"}]')
    for i, rule in enumerate(rules, 1):
        if not isinstance(rule, dict) or set(rule) - {"field", "op", "value"}:
            raise ValueError(f"rule {i}: use only the keys field, op, value")
        if not RULE_FIELD.match(str(rule.get("field", ""))):
            raise ValueError(f"rule {i}: field must be a visit field such as utm_source, referrer, landing_page")
        if rule.get("op") not in RULE_OPS:
            raise ValueError(f"rule {i}: op must be one of {', '.join(RULE_OPS)}")
        if not isinstance(rule.get("value"), str) or not rule["value"]:
            raise ValueError(f"rule {i}: value must be non-empty text")
        if rule["op"] == "regex":
            try:
                re.compile(rule["value"])
            except re.error as exc:
                raise ValueError(f"rule {i}: bad regular expression: {exc}") from None
    return rules


def schedule(raw: str) -> dict[str, list[list[str]]]:
    value = parse_json(raw, {})
    if not isinstance(value, dict):
        raise ValueError('expected an object such as {"mon": [["09:00", "18:00"]]}')
    for day, spans in value.items():
        if day not in DAYS:
            raise ValueError(f"unknown day {day!r}; use {', '.join(DAYS)}")
        if not isinstance(spans, list):
            raise ValueError(f"{day}: expected a list of [start, end] pairs")
        for span in spans:
            if (not isinstance(span, list) or len(span) != 2 or not all(isinstance(t, str) and HHMM.match(t) for t in span)
                    or span[0] >= span[1]):
                raise ValueError(f"{day}: {span!r} is not a [\"HH:MM\", \"HH:MM\"] pair with start before end")
    return value


def routing_match(raw: str) -> dict[str, list[Any]]:
    value = parse_json(raw, {})
    if not isinstance(value, dict):
        raise ValueError('expected an object such as {"source_ids": [1, 2], "utm_campaign": ["brand"]}')
    for key, items in value.items():
        if key not in ROUTING_MATCH_KEYS:
            raise ValueError(f"unknown key {key!r}; use {', '.join(ROUTING_MATCH_KEYS)}")
        if not isinstance(items, list) or not items:
            raise ValueError(f"{key}: expected a non-empty list")
        if key == "source_ids" and not all(isinstance(i, int) for i in items):
            raise ValueError("source_ids: expected numbers (source ids)")
        if key in ("dids", "caller_numbers"):
            value[key] = [normalize(str(i)) for i in items]
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
    raw = raw.strip()
    if not raw:
        return None
    if not DESTINATION.match(raw):
        raise ValueError("expected kind:value such as queue:sales, voicemail:100@default, dial:PJSIP/200")
    return raw


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
