"""Per-site conversion settings and rules: validation of what an admin types, masking of the
secrets for display, and the pure decisions "does this call / lead count" and "what is it worth"."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from astertrack.leads import STATES

CALL_RULES = ("off", "all", "answered", "target")  # which finished calls are conversions
LEAD_VALUE_MODES = ("amount", "fixed")
# A lead "reaches" a state when it is there or further along (lost is no conversion).
LEAD_ORDER = {"new": 0, "in_progress": 1, "qualified": 2, "won": 3}
LEAD_TARGET_STATES = tuple(state for state in STATES if state in LEAD_ORDER)

_MEASUREMENT_ID = re.compile(r"^G-[A-Z0-9]{4,20}$")
_COUNTER_ID = re.compile(r"^[0-9]{1,15}$")
_EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,39}$")  # GA4: letters, digits, underscores
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class SettingsError(ValueError):
    """A setting that cannot be used; ``code`` names it for the admin's translated message."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def mask(secret: str | None) -> str:
    """What the admin shows of a secret: never more than its last four characters."""
    if not secret:
        return ""
    return "••••" + secret[-4:] if len(secret) > 8 else "••••"


def check_measurement_id(value: str | None) -> str | None:
    value = (value or "").strip().upper()
    if value and not _MEASUREMENT_ID.match(value):
        raise SettingsError("measurement_id")
    return value or None


def check_counter_id(value: str | None) -> str | None:
    value = (value or "").strip()
    if value and not _COUNTER_ID.match(value):
        raise SettingsError("counter_id")
    return value or None


def check_event_name(value: str | None, default: str) -> str:
    value = (value or "").strip() or default
    if not _EVENT_NAME.match(value):
        raise SettingsError("event_name")
    return value


def check_currency(value: str | None) -> str:
    value = (value or "").strip().upper() or "RUB"
    if not _CURRENCY.match(value):
        raise SettingsError("currency")
    return value


def check_timezone(value: str | None) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError("timezone") from None
    return value


def check_money(value) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        amount = Decimal(str(value).strip().replace(",", "."))
    except InvalidOperation:
        raise SettingsError("value") from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e12"):
        raise SettingsError("value")
    return amount.quantize(Decimal("0.01"))


def call_counts(rule_calls: str, first_time_only: bool, outcome: str | None, talk_seconds: float | None,
                target_seconds: int, is_first_call: bool | None) -> bool:
    """Does a finished call meet the site's rule?  ``target``: answered and talked at least the
    site's target seconds (the reports' definition)."""
    if rule_calls == "off":
        return False
    if first_time_only and is_first_call is False:
        return False
    if rule_calls == "all":
        return True
    if outcome != "answered":
        return False
    if rule_calls == "target":
        return (talk_seconds or 0) >= target_seconds
    return True


def lead_reached(status: str | None, target: str | None) -> bool:
    """Has a lead reached the target state (or gone past it, lost excepted)?"""
    if not target or status not in LEAD_ORDER or target not in LEAD_ORDER:
        return False
    return LEAD_ORDER[status] >= LEAD_ORDER[target]


def lead_value(mode: str, fixed: Decimal | None, amount: Decimal | None) -> Decimal | None:
    """``amount``: the deal's amount when known, else the fixed value; ``fixed``: always the fixed one."""
    if mode == "amount" and amount is not None:
        return amount
    return fixed
