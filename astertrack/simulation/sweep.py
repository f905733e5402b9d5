"""Accuracy against the settings: pool sizes, holds, graces, the adaptive hold.

Why the same traffic for every setting: the difference between two pool sizes must be the
pool's, not the dice's, so one seeded stream is generated once and replayed for each.
The smallest pool reaching a target is found by doubling then bisection over whole runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from astertrack.dni.poolhealth import rule_of_thumb
from astertrack.simulation.generate import Traffic, generate
from astertrack.simulation.model import ProductSettings, TrafficModel
from astertrack.simulation.run import simulate
from astertrack.simulation.score import Score, score

DEFAULT_TARGET = 0.99
MAX_POOL = 2000
Report = Callable[[str], None]  # a progress line


@dataclass(frozen=True)
class Point:
    settings: ProductSettings
    score: Score

    def as_dict(self) -> dict[str, Any]:
        return {"settings": self.settings.as_dict(), **self.score.as_dict()}


def rules_of_thumb(visits_per_day: float) -> dict[str, int]:
    """What the two common rules would give: one number per hundred daily visits plus one, and one per
    twenty daily visitors."""
    return {"per_100_plus_1": rule_of_thumb(visits_per_day), "per_20": max(1, math.ceil(visits_per_day / 20))}


class Sweep:
    """Runs over one traffic stream, each setting simulated once (results kept)."""

    def __init__(self, model: TrafficModel, base: ProductSettings, days: float, seed: int = 1,
                 report: Report | None = None):
        self.model, self.base, self.days, self.seed = model, base, days, seed
        self.report = report
        self._traffic: dict[int, Traffic] = {}  # by heartbeat interval: the only setting the stream depends on
        self.points: dict[ProductSettings, Point] = {}

    def traffic(self, settings: ProductSettings) -> Traffic:
        key = settings.heartbeat_seconds
        if key not in self._traffic:
            self._traffic[key] = generate(self.model, settings, self.days, self.seed)
        return self._traffic[key]

    def point(self, settings: ProductSettings) -> Point:
        if settings not in self.points:
            traffic = self.traffic(settings)
            _, result = simulate(self.model, settings, self.days, self.seed, traffic=traffic)
            self.points[settings] = Point(settings, score(traffic, result))
            if self.report:
                found = self.points[settings].score
                self.report(f"pool {settings.pool_size:>4}  hold {settings.hold_seconds}s  grace "
                            f"{settings.release_grace_seconds}s  adaptive {'on' if settings.adaptive_hold else 'off'}"
                            f"  calls {found.calls}  accuracy {found.accuracy:.4f}")
        return self.points[settings]

    def sizes(self, sizes: Iterable[int], **changes: Any) -> list[Point]:
        """Accuracy at each pool size (``changes``: other settings of the base)."""
        return [self.point(replace(self.base, pool_size=max(1, int(size)), **changes)) for size in sizes]

    def smallest_pool(self, target: float = DEFAULT_TARGET, start: int = 1, **changes: Any) -> Point | None:
        """The smallest pool whose accuracy reaches ``target`` (None: not even MAX_POOL numbers).

        From ``start`` (a guess such as the rule of thumb): doubling up while short, halving down while
        enough, then bisection; so hopeless tiny pools of a busy site are never simulated."""
        def reaches(size: int) -> bool:
            return self.sizes([size], **changes)[0].score.accuracy >= target

        high = max(1, min(int(start), MAX_POOL))
        if reaches(high):
            low = high // 2
            while low >= 1 and reaches(low):
                high, low = low, low // 2
        else:
            low = high
            while True:
                if high >= MAX_POOL:
                    return None
                high = min(high * 2, MAX_POOL)
                if reaches(high):
                    break
                low = high
        while high - low > 1:  # low: known short (0 numbers is); high: reaches
            middle = (low + high) // 2
            if reaches(middle):
                high = middle
            else:
                low = middle
        return self.sizes([high], **changes)[0]

    def settings_grid(self, pool_size: int, holds: Iterable[int] = (), graces: Iterable[int] = (),
                      adaptive: Iterable[bool] = (False, True)) -> list[Point]:
        """Accuracy at one pool size under other holds, release graces and with or without the adaptive hold."""
        points = []
        for hold in list(holds) or [self.base.hold_seconds]:
            for grace in list(graces) or [self.base.release_grace_seconds]:
                for adaptive_on in adaptive:
                    points.append(self.sizes([pool_size], hold_seconds=hold, release_grace_seconds=grace,
                                             adaptive_hold=adaptive_on)[0])
        return points


def visits_per_day(traffic: Traffic) -> float:
    days = (traffic.until - traffic.start).total_seconds() / 86400
    return len(traffic.visits) / days if days else 0.0


CSV_COLUMNS = ("pool_size", "hold_seconds", "unload_grace_seconds", "release_grace_seconds", "adaptive_hold",
               "calls", "pool_calls", "accuracy", "accuracy_all", "correct", "right_source", "wrong_source",
               "unattributed", "overflows", "mean_confidence_correct", "mean_confidence_wrong")


def csv_row(point: Point) -> dict[str, Any]:
    """One point as a flat row of ``CSV_COLUMNS``."""
    s, found = point.settings, point.score
    return {"pool_size": s.pool_size, "hold_seconds": s.hold_seconds, "unload_grace_seconds": s.unload_grace_seconds,
            "release_grace_seconds": s.release_grace_seconds, "adaptive_hold": s.adaptive_hold, "calls": found.calls,
            "pool_calls": found.pool_calls, "accuracy": found.accuracy, "accuracy_all": found.accuracy_all,
            **found.counts, "overflows": found.overflows, "mean_confidence_correct": found.mean_confidence_correct,
            "mean_confidence_wrong": found.mean_confidence_wrong}


def study(model: TrafficModel, base: ProductSettings, days: float, seed: int = 1, sizes: Iterable[int] = (),
          target: float | None = DEFAULT_TARGET, holds: Iterable[int] = (), graces: Iterable[int] = (),
          adaptive: bool = False, report: Report | None = None) -> dict[str, Any]:
    """What ``astertrack simulate``, the benchmark and the admin's "what if" ask: accuracy at the given
    sizes and the current one, the smallest pool reaching ``target``, the two rules of thumb at the
    same traffic, and optionally the holds/graces/adaptive grid at the smallest pool."""
    sweep = Sweep(model, base, days, seed, report)
    traffic = sweep.traffic(base)
    per_day = model.visits_per_day  # the rules are applied to the traffic as a site states it
    thumbs = rules_of_thumb(per_day)
    points = sweep.sizes([base.pool_size, *sizes])
    smallest = sweep.smallest_pool(target, start=thumbs["per_100_plus_1"]) if target is not None else None
    thumb_points = {name: sweep.sizes([size])[0] for name, size in thumbs.items()}
    out: dict[str, Any] = {
        "model": model.as_dict(), "settings": base.as_dict(), "days": days, "seed": seed,
        "visits_per_day": per_day, "measured_visits_per_day": round(visits_per_day(traffic), 1),
        "simulated_calls": points[0].score.calls, "target": target,
        "recommended_pool": smallest.settings.pool_size if smallest else None,
        "accuracy_at_recommended": smallest.score.accuracy if smallest else None,
        "rules_of_thumb": {name: {"pool_size": thumbs[name], "accuracy": point.score.accuracy}
                           for name, point in thumb_points.items()},
    }
    if smallest is not None and (holds or graces or adaptive):
        out["grid"] = [p.as_dict() for p in sweep.settings_grid(
            smallest.settings.pool_size, holds, graces, (False, True) if adaptive else (base.adaptive_hold,))]
    by_size = sorted({p.settings.pool_size: p for p in sweep.points.values()
                      if replace(p.settings, pool_size=base.pool_size) == base}.values(),
                     key=lambda p: p.settings.pool_size)
    out["points"] = [p.as_dict() for p in by_size]
    out["csv"] = [csv_row(p) for p in sorted(sweep.points.values(), key=lambda p: (
        p.settings.pool_size, p.settings.hold_seconds, p.settings.release_grace_seconds, p.settings.adaptive_hold))]
    return out
