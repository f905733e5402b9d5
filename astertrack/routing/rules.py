"""Who should answer a call: rule matching, candidate order, destinations.  Pure functions.

The AGI loads a snapshot (``RuleView``, ``ManagerView``, ``CallContext``) from the database,
asks this module for an ordered list of candidates, checks which ones are free (device state
from Asterisk or from the AMI listener) and reserves the first free one atomically
(``astertrack.routing.reservations``).  Nothing here touches a socket or a session, so every rule
can be tested with plain values.

Rule ``match`` keys (all present keys must match; an empty match matches every call):

* ``dids``: tracking numbers (E.164)          * ``source_ids`` / ``source_names``
* ``utm_campaign``: exact campaign values     * ``landing_contains``: substrings of the landing URL
* ``caller_numbers``: caller list (VIP list)  * ``caller_tags``: any of the caller's tags
* ``vip``: true = only callers marked VIP in their profile

Destinations are ``kind:target`` strings: ``dial:PJSIP/200``, ``queue:sales``,
``voicemail:100@default``, ``context:ivr-main`` (Goto ``ivr-main,s,1``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from astertrack.routing.schedule import is_open

STRATEGIES = ("round_robin", "least_recent", "fewest_today", "ring_all", "queue")
FREE_STATES = frozenset({"NOT_INUSE"})
RETRY_STATUSES = frozenset({"NOANSWER", "BUSY", "CHANUNAVAIL", "CONGESTION"})
DESTINATION_KINDS = ("dial", "queue", "voicemail", "context")  # the [astertrack-fallback] branches
# The ``match`` keys ``rule_matches`` reads; ``vip`` takes true/false, the others a list.
MATCH_KEYS = ("dids", "source_ids", "source_names", "utm_campaign", "landing_contains", "caller_numbers",
              "caller_tags", "vip")
_DEST_TARGET = re.compile(r"^[A-Za-z0-9_./@&:+#*-]{1,150}$")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class DestinationError(ValueError):
    """A destination string is not ``kind:target`` with a known kind and a safe target."""


@dataclass(frozen=True)
class Destination:
    kind: str
    target: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


def parse_destination(text: str | None) -> Destination | None:
    """``"queue:sales"`` -> Destination; a bare dial string (``PJSIP/101``) means ``dial:``.

    Targets end up in dialplan applications, so only a conservative character set is
    accepted (no commas, quotes, spaces, parentheses or ``$``).
    """
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    kind, sep, target = text.partition(":")
    if not sep or kind not in DESTINATION_KINDS:
        kind, target = "dial", text
    if not _DEST_TARGET.match(target):
        raise DestinationError(f"unsafe or empty destination target: {text!r}")
    return Destination(kind, target)


@dataclass(frozen=True)
class CallContext:
    """What is known about the call when the rules are evaluated."""

    did: str | None = None
    caller: str | None = None
    site_id: int | None = None
    source_id: int | None = None
    source_name: str | None = None
    utm_campaign: str | None = None
    landing_page: str | None = None
    caller_tags: tuple[str, ...] = ()
    caller_is_vip: bool = False


@dataclass(frozen=True)
class RuleView:
    id: int
    name: str
    priority: int = 100
    site_id: int | None = None
    match: Mapping[str, Any] = field(default_factory=dict)
    strategy: str = "round_robin"
    member_ids: tuple[int, ...] = ()
    queue_name: str | None = None
    sticky: bool = True
    sticky_days: int = 30
    ring_timeout: int | None = None
    max_attempts: int | None = None
    schedule: Mapping[str, Any] = field(default_factory=dict)
    after_hours_destination: str | None = None
    fallback_destination: str | None = None
    rr_cursor: int = 0


@dataclass(frozen=True)
class ManagerView:
    id: int
    endpoint: str
    name: str = ""
    extension: str | None = None
    enabled: bool = True
    paused: bool = False
    schedule: Mapping[str, Any] = field(default_factory=dict)
    device_state: str = "UNKNOWN"
    reserved_until: dt.datetime | None = None
    reserved_call_uid: str | None = None
    last_routed_at: dt.datetime | None = None
    calls_today: int = 0

    @property
    def label(self) -> str:
        """Short name for the UserEvent ``manager:`` header: the extension (``101``)."""
        if self.extension:
            return self.extension
        return self.endpoint.rsplit("/", 1)[-1]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    return [value]


DEFAULT_RULE_NAME = "default"


def implicit_rule(enabled_manager_ids: tuple[int, ...]) -> RuleView | None:
    """No rule matched: offer the call to every enabled manager, least recently routed first."""
    if not enabled_manager_ids:
        return None
    return RuleView(id=0, name=DEFAULT_RULE_NAME, priority=1_000_000, strategy="least_recent",
                    member_ids=enabled_manager_ids, sticky=True, sticky_days=30)


def rule_matches(rule: RuleView, ctx: CallContext) -> bool:
    """Every key present in ``rule.match`` must hold for the call."""
    if rule.site_id is not None and rule.site_id != ctx.site_id:
        return False
    match = rule.match or {}
    if "dids" in match and ctx.did not in set(_as_list(match["dids"])):
        return False
    if "source_ids" in match and ctx.source_id not in {int(v) for v in _as_list(match["source_ids"])}:
        return False
    if "source_names" in match:
        names = {str(v).casefold() for v in _as_list(match["source_names"])}
        if (ctx.source_name or "").casefold() not in names:
            return False
    if "utm_campaign" in match and (ctx.utm_campaign or None) not in set(_as_list(match["utm_campaign"])):
        return False
    if "landing_contains" in match:
        landing = (ctx.landing_page or "").casefold()
        if not landing or not any(str(part).casefold() in landing for part in _as_list(match["landing_contains"])):
            return False
    if "caller_numbers" in match and ctx.caller not in set(_as_list(match["caller_numbers"])):
        return False
    if "caller_tags" in match:
        wanted = {str(tag).casefold() for tag in _as_list(match["caller_tags"])}
        if not wanted & {tag.casefold() for tag in ctx.caller_tags}:
            return False
    if match.get("vip") and not ctx.caller_is_vip:
        return False
    return True


def select_rule(rules: Iterable[RuleView], ctx: CallContext) -> RuleView | None:
    """The matching rule with the lowest priority number (then the lowest id)."""
    for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
        if rule_matches(rule, ctx):
            return rule
    return None


def is_available(manager: ManagerView, now: dt.datetime, tz: str | None, call_uid: str | None = None) -> bool:
    """Enabled, not paused, inside their schedule and not held for another call.

    Device state is checked separately because it may have to be asked from Asterisk.
    """
    if not manager.enabled or manager.paused:
        return False
    if manager.reserved_until is not None and manager.reserved_until >= now:
        if call_uid is None or manager.reserved_call_uid != call_uid:
            return False
    return is_open(manager.schedule, now, tz)


def is_free_state(device_state: str | None) -> bool:
    return (device_state or "").strip().upper() in FREE_STATES


def order_candidates(strategy: str, managers: Sequence[ManagerView], rr_cursor: int = 0) -> list[ManagerView]:
    """Managers in the order they should be offered the call.

    * round_robin: by id, starting after the last one chosen (``rr_cursor`` = its id)
    * least_recent: the one routed longest ago first
    * fewest_today: fewest calls today first, then least recent
    * ring_all / queue: by id (all of them ring at once)
    """
    by_id = sorted(managers, key=lambda m: m.id)
    if strategy == "round_robin":
        after = [m for m in by_id if m.id > rr_cursor]
        return after + [m for m in by_id if m.id <= rr_cursor]
    if strategy == "least_recent":
        return sorted(by_id, key=lambda m: (m.last_routed_at or EPOCH, m.id))
    if strategy == "fewest_today":
        return sorted(by_id, key=lambda m: (m.calls_today, m.last_routed_at or EPOCH, m.id))
    return by_id


def with_sticky_first(candidates: Sequence[ManagerView], sticky: ManagerView | None) -> list[ManagerView]:
    """Put the caller's personal manager in front (they need not be in the rule's group)."""
    if sticky is None:
        return list(candidates)
    return [sticky] + [m for m in candidates if m.id != sticky.id]


def dial_string(managers: Sequence[ManagerView]) -> str:
    """``PJSIP/101`` or ``PJSIP/101&PJSIP/102`` for a ring-all group."""
    return "&".join(m.endpoint for m in managers)


def manager_label(managers: Sequence[ManagerView]) -> str:
    """``101`` or ``101&102``: the form of the recorded ``AstertrackRoute`` ``manager:`` header."""
    return "&".join(m.label for m in managers)


def should_retry(dial_status: str | None) -> bool:
    """A failed attempt worth trying the next candidate for (not ANSWER, not CANCEL)."""
    return (dial_status or "").strip().upper() in RETRY_STATUSES


def fallback_for(rule: RuleView | None, default: str | None) -> Destination | None:
    """Where the call goes when no candidate can take it: rule's fallback, else the global one."""
    for text in ((rule.fallback_destination if rule else None), default):
        try:
            destination = parse_destination(text)
        except DestinationError:
            continue
        if destination is not None:
            return destination
    return None


def after_hours_for(rule: RuleView | None, default: str | None) -> Destination | None:
    """The rule's after-hours destination, else its fallback, else the global fallback."""
    if rule is not None:
        try:
            destination = parse_destination(rule.after_hours_destination)
        except DestinationError:
            destination = None
        if destination is not None:
            return destination
    return fallback_for(rule, default)
