"""The traffic model: what a site's visitors do, as numbers a simulation draws from.

Why parameters and not recorded traffic: a pool is sized for traffic it has not seen yet (a
campaign doubling visits, a pool shrunk to save rent), so the simulator needs a shape it can
scale.  The defaults are a plausible small-business site; ``fit.fit_model`` reads a site's own
shape from its stored sessions and calls.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

# Share of a day's visits in each hour (local time), a typical office-hours site: quiet at
# night, a morning rise, an afternoon peak.  Normalised when used.
DEFAULT_DAILY = (0.4, 0.25, 0.2, 0.2, 0.25, 0.4, 0.8, 1.5, 2.6, 3.6, 4.2, 4.4,
                 4.3, 4.3, 4.4, 4.3, 4.1, 3.8, 3.4, 3.1, 2.8, 2.3, 1.6, 0.9)
# Relative weight of each weekday, Monday first: weekends are quieter.
DEFAULT_WEEKLY = (1.1, 1.1, 1.05, 1.05, 1.0, 0.7, 0.6)
# Advertising sources sharing the pool (utm_source, weight); visits with none are organic
# and draw from the site's default pool too.
DEFAULT_SOURCES = (("yandex", 0.4), ("google", 0.3), ("vk", 0.15), (None, 0.15))


@dataclass(frozen=True)
class TrafficModel:
    """Every parameter of the simulated traffic, with sensible defaults (docs/simulation.md)."""

    visits_per_day: float = 300.0
    daily_curve: tuple[float, ...] = DEFAULT_DAILY  # 24 hourly weights
    weekly_curve: tuple[float, ...] = DEFAULT_WEEKLY  # 7 weekday weights, Monday first
    session_median_seconds: float = 150.0  # log-normal session length: its median ...
    session_sigma: float = 1.0  # ... and the sigma of its logarithm
    pages_per_visit: float = 3.0  # mean pages of a visit (1 + Poisson)
    tab_left_open_share: float = 0.08  # the tab stays open after the visitor left: heartbeats go on
    tab_left_open_minutes: float = 30.0  # ... for this long on average (exponential)
    closed_without_unload_share: float = 0.15  # the tab closed without an unload: heartbeats just stop
    mobile_share: float = 0.55  # visits from a phone ...
    mobile_suspend_share: float = 0.3  # ... whose browser suspends the timers once backgrounded
    cookie_loss_share: float = 0.2  # a returning visitor without the first-party cookie
    return_visit_share: float = 0.1  # visitors who come back another day
    bot_share: float = 0.05  # visits by bots (never call, never take a pool number)
    caller_share: float = 0.05  # human visits that end in a call
    call_during_share: float = 0.7  # of those calls: during the visit
    call_after_share: float = 0.25  # ... minutes after leaving (the rest: a number written down earlier)
    call_after_minutes: float = 4.0  # mean delay of a call after leaving (exponential)
    written_down_days: float = 2.0  # mean delay of a call to a number written down (exponential)
    repeat_caller_share: float = 0.1  # callers who call again days later (from the number they dialled)
    repeat_after_days: float = 3.0  # ... mean delay (exponential)
    sources: tuple[tuple[str | None, float], ...] = DEFAULT_SOURCES
    timezone_offset_hours: int = 3  # the curves are local time; the simulation runs in UTC

    def __post_init__(self) -> None:
        problems = []
        if len(self.daily_curve) != 24 or min(self.daily_curve) < 0 or sum(self.daily_curve) <= 0:
            problems.append("daily_curve: 24 non-negative weights, not all zero")
        if len(self.weekly_curve) != 7 or min(self.weekly_curve) < 0 or sum(self.weekly_curve) <= 0:
            problems.append("weekly_curve: 7 non-negative weights, not all zero")
        for name in ("tab_left_open_share", "closed_without_unload_share", "mobile_share", "mobile_suspend_share",
                     "cookie_loss_share", "return_visit_share", "bot_share", "caller_share", "call_during_share",
                     "call_after_share", "repeat_caller_share"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name}: a share between 0 and 1")
        if self.call_during_share + self.call_after_share > 1 + 1e-9:
            problems.append("call_during_share + call_after_share: at most 1")
        if self.tab_left_open_share + self.closed_without_unload_share > 1 + 1e-9:
            problems.append("tab_left_open_share + closed_without_unload_share: at most 1")
        for name in ("visits_per_day", "session_median_seconds", "session_sigma", "pages_per_visit",
                     "tab_left_open_minutes", "call_after_minutes", "written_down_days", "repeat_after_days"):
            if not getattr(self, name) > 0 or math.isinf(getattr(self, name)):
                problems.append(f"{name}: a positive number")
        if not self.sources or sum(weight for _, weight in self.sources) <= 0:
            problems.append("sources: at least one with a positive weight")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def written_down_share(self) -> float:
        return max(0.0, 1 - self.call_during_share - self.call_after_share)

    def with_values(self, **values: Any) -> TrafficModel:
        """A copy with some parameters changed (the CLI's ``--set name=value``), types as declared."""
        known = {f.name: f for f in fields(self)}
        converted = {}
        for name, value in values.items():
            if name not in known:
                raise ValueError(f"unknown parameter {name!r} (known: {', '.join(sorted(known))})")
            current = getattr(self, name)
            if isinstance(value, str):
                if isinstance(current, tuple) and name in ("daily_curve", "weekly_curve"):
                    value = tuple(float(part) for part in value.split(","))
                elif isinstance(current, float):
                    value = float(value)
                elif isinstance(current, int):
                    value = int(value)
                else:
                    raise ValueError(f"{name} cannot be set from text")
            converted[name] = value
        return replace(self, **converted)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = [[name, weight] for name, weight in self.sources]
        return data


@dataclass(frozen=True)
class ProductSettings:
    """The product's settings a simulation runs with: what a sweep varies besides the pool size."""

    pool_size: int = 10
    hold_seconds: int = 600  # Site.hold_seconds
    heartbeat_seconds: int = 60  # Site.heartbeat_seconds
    hold_cap_seconds: int = 3600  # Site.hold_cap_seconds
    unload_grace_seconds: int = 120  # Site.unload_grace_seconds
    release_grace_seconds: int = 900  # [agi] release_grace_seconds: attribution after a release
    adaptive_hold: bool = False  # Site.adaptive_hold
    adaptive_free_percent: int = 20
    overflow_policy: str = "fallback"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Tolerances:
    """How close ``fit.fit_model`` gets on a synthetic history of a few thousand visits (tested)."""

    visits_per_day: float = 0.05  # relative
    session_median_seconds: float = 0.15  # relative (heartbeats round the stored length)
    session_sigma: float = 0.15  # absolute
    pages_per_visit: float = 0.1  # relative
    bot_share: float = 0.02  # absolute
    caller_share: float = 0.015  # absolute
    call_during_share: float = 0.08  # absolute
    repeat_caller_share: float = 0.06  # absolute
    curve: float = 0.05  # absolute, per normalised hourly/weekday share
    extra: dict[str, float] = field(default_factory=dict)


TOLERANCES = Tolerances()
