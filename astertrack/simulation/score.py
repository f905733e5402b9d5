"""Compare what the product decided with the ground truth.

Each call is one of: ``correct`` (exactly its visit; under the site's first-touch model a caller
seen within the attribution window belongs to the visit of their first call), ``right_source`` (its source, another
visit or none), ``wrong_source``, ``unattributed`` (neither a visit nor a source).  Accuracy
is the correct share of the calls a pool decides — during the visit and minutes after it;
``accuracy_all`` adds the calls to a number written down days ago and the repeat calls, which
no pool size fixes.  The confidence buckets say whether low-confidence calls were in fact
wrong more often: the confidence is only worth showing if they were.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from astertrack.simulation.generate import TIMINGS, Traffic
from astertrack.simulation.run import RunResult

CATEGORIES = ("correct", "right_source", "wrong_source", "unattributed")
POOL_TIMINGS = ("during", "after")  # the calls the pool size decides
# (label, lowest confidence in the bucket), highest first
BUCKETS = (("1.0", 1.0), ("0.8-1.0", 0.8), ("0.5-0.8", 0.5), ("0.2-0.5", 0.2), ("0-0.2", 0.0))


@dataclass
class Score:
    calls: int = 0
    pool_calls: int = 0  # during the visit or after it
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    by_timing: dict[str, dict[str, int]] = field(default_factory=dict)
    by_confidence: list[dict[str, Any]] = field(default_factory=list)
    accuracy: float = 1.0
    accuracy_all: float = 1.0
    mean_confidence_correct: float | None = None
    mean_confidence_wrong: float | None = None
    overflows: int = 0

    @property
    def low_confidence_wrong_more_often(self) -> bool | None:
        """Whether wrong calls carried less confidence than correct ones (None: no wrong call)."""
        if self.mean_confidence_wrong is None or self.mean_confidence_correct is None:
            return None
        return self.mean_confidence_wrong < self.mean_confidence_correct

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["low_confidence_wrong_more_often"] = self.low_confidence_wrong_more_often
        return data


def category(result, truth_source: str | None) -> str:
    """One call's outcome against its visit's sessions and source."""
    found = result.attributed
    if found.session is not None and found.session in result.truth_sessions:
        return "correct"
    if found.session is None and found.source is None:
        return "unattributed"
    return "right_source" if found.source == truth_source else "wrong_source"


def bucket(confidence: float) -> str:
    for label, low in BUCKETS:
        if confidence >= low:
            return label
    return BUCKETS[-1][0]


def score(traffic: Traffic, run: RunResult) -> Score:
    out = Score(overflows=run.overflows)
    out.by_timing = {timing: {"calls": 0, **dict.fromkeys(CATEGORIES, 0)} for timing in TIMINGS}
    buckets = {label: {"bucket": label, "calls": 0, "correct": 0} for label, _ in BUCKETS}
    right, wrong = [], []
    for result in run.results:
        call = traffic.calls[result.call]
        truth = traffic.visits[result.truth_visit].utm_source
        name = category(result, truth)
        out.calls += 1
        out.counts[name] += 1
        out.by_timing[call.timing]["calls"] += 1
        out.by_timing[call.timing][name] += 1
        if call.timing in POOL_TIMINGS:
            out.pool_calls += 1
        slot = buckets[bucket(result.attributed.confidence)]
        slot["calls"] += 1
        slot["correct"] += name == "correct"
        (right if name == "correct" else wrong).append(result.attributed.confidence)
    pool_correct = sum(out.by_timing[t]["correct"] for t in POOL_TIMINGS)
    out.accuracy = round(pool_correct / out.pool_calls, 4) if out.pool_calls else 1.0
    out.accuracy_all = round(out.counts["correct"] / out.calls, 4) if out.calls else 1.0
    for slot in buckets.values():
        slot["wrong_share"] = round(1 - slot["correct"] / slot["calls"], 4) if slot["calls"] else None
    out.by_confidence = list(buckets.values())
    out.mean_confidence_correct = round(sum(right) / len(right), 4) if right else None
    out.mean_confidence_wrong = round(sum(wrong) / len(wrong), 4) if wrong else None
    return out
