"""Form fields made of many inputs, so no one types JSON: a source-rule builder, a routing-match
builder, a weekly hours grid and a time-zone picker.  Each reads the inputs named
``<field>-<part>`` from the whole form, stores exactly the shape the engine reads
(``astertrack.dni.sources``, ``astertrack.routing.rules``, ``astertrack.routing.schedule``), keeps
what was posted to show it back with an error beside the row it belongs to, and is drawn by the
macro of the same ``builder`` name in ``templates/settings/_builders.html``.  The page works
without JavaScript (one blank row is always offered); ``static/js/settings.js`` adds rows."""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo
from collections.abc import Mapping
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms import Field, SelectField
from wtforms.fields.choices import SelectChoice
from wtforms.utils import unset_value
from wtforms.validators import ValidationError

from astertrack.db.models import Site, Source
from astertrack.dni import sources
from astertrack.routing import rules
from astertrack.routing import schedule as hours
from webadmin.settings import validators as v

MAX_ROWS = 100
FIELD_LABELS = {
    "utm_source": _l("utm_source (ad system)"), "utm_medium": _l("utm_medium (traffic type)"),
    "utm_campaign": _l("utm_campaign (campaign)"), "utm_content": _l("utm_content (ad)"),
    "utm_term": _l("utm_term (keyword tag)"), "gclid": _l("gclid (Google Ads click)"),
    "yclid": _l("yclid (Yandex Direct click)"), "fbclid": _l("fbclid (Facebook click)"),
    "referrer": _l("referrer (previous page address)"), "referrer_host": _l("referrer site"),
    "landing_page": _l("landing page address"), "keyword": _l("search phrase"),
}
OP_LABELS = {"equals": _l("is"), "contains": _l("contains"), "prefix": _l("starts with"),
             "regex": _l("matches the regular expression"), "present": _l("is present"), "absent": _l("is absent")}
MATCH_KEY_LABELS = {
    "dids": _l("the number dialled is"), "source_ids": _l("the source is"),
    "source_names": _l("the source name (any site) is"), "utm_campaign": _l("the campaign (utm_campaign) is"),
    "landing_contains": _l("the landing page contains"), "caller_numbers": _l("the caller's number is"),
    "caller_tags": _l("the caller has the tag"), "vip": _l("the caller is VIP"),
}
DAY_LABELS = {"mon": _l("Monday"), "tue": _l("Tuesday"), "wed": _l("Wednesday"), "thu": _l("Thursday"),
              "fri": _l("Friday"), "sat": _l("Saturday"), "sun": _l("Sunday")}
WORKDAY = ("09:00", "18:00")  # what a closed day's inputs offer when it is opened


def _choices(values, labels) -> list[tuple[str, Any]]:
    return [(value, labels.get(value, value)) for value in values]


class Builder(Field):
    """Many inputs, one stored value.  ``shown`` is what the inputs display; ``row_errors`` maps
    a row (or day) to its message."""

    builder = ""

    def process(self, formdata, data=unset_value, extra_filters=None):
        self.formdata = formdata
        self.row_errors: dict[Any, str] = {}
        super().process(formdata, data, extra_filters)

    def part(self, key: str) -> str:
        return (self.formdata.get(f"{self.name}-{key}") or "") if self.formdata is not None else ""

    def has(self, key: str) -> bool:
        return self.formdata is not None and f"{self.name}-{key}" in self.formdata

    def indexes(self, infix: str = "") -> list[int]:
        """The row numbers posted (``<name>-<infix><n>-...``), in order; JS may leave gaps."""
        pattern = re.compile(re.escape(f"{self.name}-{infix}") + r"(\d{1,4})(-|$)")
        found = {int(m.group(1)) for key in (self.formdata or {}) if (m := pattern.match(key))}
        return sorted(found)[:MAX_ROWS]

    def load(self, db: Session) -> None:
        """Options read from the database (only the match builder has some)."""

    def pre_validate(self, form) -> None:
        if self.row_errors:
            raise ValidationError(_("Fix the rows marked below."))


class Conditions(Builder):
    """A source's match rules: rows of field, operator, value; every row must match."""

    builder = "conditions"
    fields = property(lambda self: _choices(sources.MATCH_FIELDS, FIELD_LABELS))
    ops = property(lambda self: _choices(sources.OPS, OP_LABELS))
    valueless = sources.VALUELESS_OPS

    def process_data(self, value) -> None:
        self.data = list(value or [])
        self.shown = [{"field": item.get("field", ""), "op": item.get("op", "equals"), "value": item.get("value", "")}
                      for item in self.data if isinstance(item, Mapping)]

    def process_formdata(self, valuelist) -> None:
        self.data, self.shown = [], []
        for i in self.indexes():
            row = {"field": self.part(f"{i}-field"), "op": self.part(f"{i}-op") or "equals",
                   "value": self.part(f"{i}-value")}
            if not row["field"] and not row["value"].strip():
                continue  # a blank row
            self.shown.append(row)
            try:
                self.data.append(v.condition(row["field"], row["op"], row["value"]))
            except ValueError as exc:
                self.row_errors[len(self.shown) - 1] = str(exc)


class Match(Builder):
    """A routing rule's match: rows of what and value; rows of one kind are alternatives, rows of
    different kinds must all hold (``rules.rule_matches``).  Sources are picked by name."""

    builder = "match"
    keys = property(lambda self: _choices(rules.MATCH_KEYS, MATCH_KEY_LABELS))
    valueless = ("vip",)

    def process_data(self, value) -> None:
        self.data = dict(value or {})
        self.source_options: list[tuple[str, str]] = []
        self.shown = []
        for key, items in self.data.items():
            if key == "vip":
                if items:
                    self.shown.append({"key": key, "value": "", "source": ""})
                continue
            for item in items if isinstance(items, (list, tuple)) else [items]:
                if key == "source_ids":
                    self.shown.append({"key": key, "value": "", "source": str(item)})
                else:
                    self.shown.append({"key": key, "value": str(item), "source": ""})

    def process_formdata(self, valuelist) -> None:
        self.shown, self._parsed = [], []
        for i in self.indexes():
            row = {"key": self.part(f"{i}-key"), "value": self.part(f"{i}-value"), "source": self.part(f"{i}-source")}
            if not row["key"] and not row["value"].strip():
                continue
            self.shown.append(row)
            try:
                if row["key"] == "source_ids":
                    if not row["source"].isdigit():
                        raise ValueError(_("Choose a source."))
                    parsed = int(row["source"])
                else:
                    parsed = v.match_value(row["key"], row["value"])
                self._parsed.append((len(self.shown) - 1, row["key"], parsed))
            except ValueError as exc:
                self.row_errors[len(self.shown) - 1] = str(exc)
        self.data = self._compose()

    def _compose(self) -> dict[str, Any]:
        match: dict[str, Any] = {}
        for key in rules.MATCH_KEYS:
            values = [value for _row, k, value in getattr(self, "_parsed", []) if k == key]
            if key == "vip" and values:
                match[key] = True
            elif values:
                match[key] = list(dict.fromkeys(values))
        return match

    def load(self, db: Session) -> None:
        """Sources by name (with the site when there are several sites); a source the stored rule
        names that is no longer offered (archived, deleted) stays selectable, so saving loses nothing."""
        several_sites = (db.scalar(select(Site.id).offset(1).limit(1)) is not None)
        live = select(Source.id, Source.name, Site.name.label("site")).join(Site, Site.id == Source.site_id)
        if hasattr(Source, "archived_at"):
            live = live.where(Source.archived_at.is_(None))
        options = [(str(row.id), f"{row.name} ({row.site})" if several_sites else row.name)
                   for row in db.execute(live.order_by(Source.name, Site.name))]
        offered = {value for value, _label in options}
        stored = (self.object_data or {}).get("source_ids") if isinstance(self.object_data, Mapping) else None
        wanted = [str(item) for item in (stored if isinstance(stored, (list, tuple)) else [stored] if stored else [])]
        for source_id in dict.fromkeys(wanted):
            if source_id not in offered and source_id.isdigit():
                source = db.get(Source, int(source_id))
                options.append((source_id, _("%(name)s (archived)", name=source.name) if source is not None
                                else _("deleted source #%(id)s", id=source_id)))
        self.source_options = options

    def pre_validate(self, form) -> None:
        offered = {value for value, _label in self.source_options}
        for row, key, value in getattr(self, "_parsed", []):
            if key == "source_ids" and str(value) not in offered:
                self.row_errors[row] = _("Choose a source.")
        super().pre_validate(form)


class Hours(Builder):
    """Working hours: per weekday open or closed, from-to and breaks, plus holidays; or always
    open.  Stored as ``routing.schedule`` reads it: ``{"mon": [["09:00", "13:00"], ["14:00",
    "18:00"]], "closed_dates": ["2026-12-31"]}``; ``{}`` is always open."""

    builder = "hours"
    days = property(lambda self: list(DAY_LABELS.items()))

    def process_data(self, value) -> None:
        self.data = dict(value or {})
        weekdays = [key for key in self.data if key in hours.DAYS]
        self.exact = True
        days = {}
        for index, day in enumerate(hours.DAYS):
            spans = self.data.get(day) or []
            shown = v.spans_as_day(spans) if spans else None
            if spans and shown is None:
                self.exact = False
            start, end, breaks = shown or (*WORKDAY, [])
            days[day] = {"open": bool(spans) if weekdays else index < 5, "from": _time_input(start),
                         "to": _time_input(end), "breaks": [(_time_input(a), _time_input(b)) for a, b in breaks]}
        self.shown = {"always": not weekdays, "days": days,
                      "holidays": [str(d) for d in self.data.get("closed_dates") or []]}

    def process_formdata(self, valuelist) -> None:
        if not valuelist:  # the grid was not on the posted page (its marker input is missing): as empty
            self.process_data({})
            return
        always = self.has("always")
        days, schedule = {}, {}
        for day in hours.DAYS:
            breaks = [(self.part(f"{day}-break-{j}-from"), self.part(f"{day}-break-{j}-to"))
                      for j in self.indexes(f"{day}-break-")]
            breaks = [(a, b) for a, b in breaks if a.strip() or b.strip()]
            shown = {"open": self.has(f"{day}-open"), "from": self.part(f"{day}-from"), "to": self.part(f"{day}-to"),
                     "breaks": breaks}
            days[day] = shown
            if shown["open"] and not always:
                try:
                    schedule[day] = v.day_spans(shown["from"], shown["to"], breaks)
                except ValueError as exc:
                    self.row_errors[day] = str(exc)
        if not always and not schedule and not any(k in DAY_LABELS for k in self.row_errors):
            schedule = {day: [] for day in hours.DAYS}  # never open: every weekday closed
        holidays = [self.part(f"holiday-{j}") for j in self.indexes("holiday-")]
        holidays = [day for day in holidays if day.strip()]
        closed = []
        for j, day in enumerate(holidays):
            try:
                closed.append(v.holiday(day))
            except ValueError as exc:
                self.row_errors[f"holiday-{j}"] = str(exc)
        if closed:
            schedule["closed_dates"] = sorted(set(closed))
        self.exact = True
        self.shown = {"always": always, "days": days, "holidays": holidays}
        self.data = schedule


def _time_input(text: str) -> str:
    """What ``<input type=time>`` can show: midnight as an end is 00:00."""
    return "00:00" if text == "24:00" else text


@functools.lru_cache(maxsize=4)
def _zone_choices(day: dt.date) -> tuple[SelectChoice, ...]:
    """Every zone of the system's database, grouped by region, labelled with today's UTC offset."""
    now = dt.datetime.combine(day, dt.time(12), dt.UTC)
    choices = []
    for name in sorted(zoneinfo.available_timezones()):
        if name.startswith(("Etc/", "SystemV/")) or "/" not in name and name != "UTC":
            continue  # POSIX-style and legacy aliases: the region names cover every place
        offset = now.astimezone(zoneinfo.ZoneInfo(name)).strftime("%z")
        region = name.split("/", 1)[0] if "/" in name else "UTC"
        choices.append(SelectChoice(name, f"{name.replace('_', ' ')} (UTC{offset[:3]}:{offset[3:]})",
                                    optgroup=region))
    return tuple(choices)


class TimeZone(SelectField):
    """A zone picked from the system's time-zone database (grouped; settings.js adds a search
    box); a stored zone not in the list is still offered, so the current value always shows."""

    builder = "timezone"

    def __init__(self, label=None, validators=None, **kwargs):
        super().__init__(label, validators, choices=[], **kwargs)

    def load(self, db: Session) -> None:
        choices = list(_zone_choices(dt.date.today()))
        current = self.data if isinstance(self.data, str) else None
        if current and current not in {c.value for c in choices}:
            choices.insert(0, SelectChoice(current, current))
        self.choices = choices

    def pre_validate(self, form) -> None:
        try:
            v.timezone(self.data or "")
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        if self.data not in {c.value for c in self.choices}:
            raise ValidationError(_("Choose one of the options."))
