"""The call score: the points of the ticked checklist items over the points of all of them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_ITEM_POINTS = 100


@dataclass(frozen=True)
class Score:
    points: int
    max_points: int
    total: float  # points / max_points, 0..1 (0 when the checklist is worth nothing)
    ticks: list[dict[str, Any]]  # each item as it was scored: {id, text, points, ticked}


def score(items: Iterable[Any], ticked_ids: Iterable[int]) -> Score:
    """Score ``items`` (anything with id, text, points) given the ids a reviewer ticked.

    Ids that are not among ``items`` (an item archived meanwhile, a forged form) are ignored, so
    a score never counts a point its checklist does not have.
    """
    ticked = set(ticked_ids)
    ticks = [{"id": item.id, "text": item.text, "points": int(item.points), "ticked": item.id in ticked}
             for item in items]
    max_points = sum(t["points"] for t in ticks)
    points = sum(t["points"] for t in ticks if t["ticked"])
    return Score(points=points, max_points=max_points, total=points / max_points if max_points else 0.0, ticks=ticks)
