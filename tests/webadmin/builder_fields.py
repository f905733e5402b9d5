"""What a browser posts for the settings builders (webadmin/settings/builders.py), from the value
a test wants stored: the inverse of the builders, written out by hand so a test can see it."""

from __future__ import annotations

from typing import Any

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def conditions(rows: list[dict[str, str]], name: str = "match_rules") -> dict[str, str]:
    """Source match rules: ``[{"field", "op", "value"}]`` as rows ``match_rules-<n>-<part>``."""
    form = {}
    for i, row in enumerate(rows):
        form |= {f"{name}-{i}-field": row["field"], f"{name}-{i}-op": row.get("op", "equals"),
                 f"{name}-{i}-value": row.get("value", "")}
    return form


def match(value: dict[str, Any], name: str = "match") -> dict[str, str]:
    """A routing match: one row per value; a source by id in the ``source`` select."""
    form, i = {}, 0
    for key, items in value.items():
        for item in ([True] if key == "vip" else items):
            form[f"{name}-{i}-key"] = key
            if key == "source_ids":
                form[f"{name}-{i}-source"] = str(item)
            elif key != "vip":
                form[f"{name}-{i}-value"] = str(item)
            i += 1
    return form


def hours(days: dict[str, tuple[str, str, list[tuple[str, str]]]] | None = None, holidays: list[str] = (),
          always: bool = False, name: str = "schedule") -> dict[str, str]:
    """The hours grid: ``{"mon": ("09:00", "18:00", [("13:00", "14:00")])}``, holidays, always open."""
    form = {name: "grid"}
    if always:
        form[f"{name}-always"] = "on"
    for day in DAYS:
        start, end, breaks = (days or {}).get(day, ("09:00", "18:00", []))
        form |= {f"{name}-{day}-from": start, f"{name}-{day}-to": end}
        if day in (days or {}):
            form[f"{name}-{day}-open"] = "on"
        for j, (a, b) in enumerate(breaks):
            form |= {f"{name}-{day}-break-{j}-from": a, f"{name}-{day}-break-{j}-to": b}
    for j, day in enumerate(holidays):
        form[f"{name}-holiday-{j}"] = day
    return form
