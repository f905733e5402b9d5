"""CSV imports for tracking numbers, ad costs and tracking prices (#27): parse first (a preview with per-row errors), apply later.

Parsing never writes.  A file with errors can still be applied for its good rows, and every
bad row says its line number and what is wrong, so nothing is lost silently.  An update says
what it changes (field: old -> new) and warns when a number would move between a pool and a
static source, between sources or between sites.  Both ``,`` and ``;`` separators are accepted
(spreadsheets in Russian locales write ``;``).

Messages are ``Message`` values: an English template marked with ``N_`` (extracted into the web
admin's catalog) and its parameters, so the admin shows them in the user's language while
``str()`` stays plain English for logs and scripts.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import AdCost, NumberPool, Site, Source, TrackingNumber, TrackingPrice
from astertrack.phones import PhoneNumberError, normalize

MAX_ROWS = 20000
TRUE_WORDS = {"", "1", "yes", "y", "true", "on", "да"}
FALSE_WORDS = {"0", "no", "n", "false", "off", "нет"}


def N_(text: str) -> str:
    """Mark a message for the admin's translation catalog (the core has no Flask)."""
    return text


@dataclass(frozen=True)
class Message:
    """A template with ``%(name)s`` parameters; the admin translates ``text`` then fills it in."""

    text: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.params)

    def __str__(self) -> str:
        return self.text % self.args if self.params else self.text


def msg(text: str, **params: Any) -> Message:
    return Message(text, tuple(params.items()))


class CsvImportError(ValueError):
    """The file as a whole cannot be read (no header, wrong columns, too large)."""

    def __init__(self, message: Message):
        super().__init__(str(message))
        self.msg = message


@dataclass(frozen=True)
class RowError:
    line: int
    problems: tuple[Message, ...]
    raw: str = ""

    @property
    def message(self) -> str:
        return "; ".join(str(problem) for problem in self.problems)


@dataclass(frozen=True)
class Change:
    """One field an update changes, as the preview shows it (names, not ids)."""

    field: str  # site|source|pool|label|enabled|amount|currency
    old: Any
    new: Any


@dataclass
class NumberRow:
    line: int
    number: str
    site_id: int
    source_id: int | None
    pool_id: int | None
    label: str | None
    enabled: bool
    action: str  # create|update
    site_name: str = ""
    source_name: str | None = None
    pool_name: str | None = None
    changes: list[Change] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)


@dataclass
class CostRow:
    line: int
    source_id: int
    day: dt.date
    amount: Decimal
    currency: str
    action: str  # create|update
    source_name: str = ""
    changes: list[Change] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)


def _reader(text: str, required: set[str]) -> tuple[list[str], list[tuple[int, dict[str, str], str]]]:
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise CsvImportError(msg(N_("The file is empty; the first line must be a header.")))
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    missing = required - set(header)
    if missing:
        raise CsvImportError(msg(N_("Missing column(s): %(missing)s; the header is: %(header)s."),
                                 missing=", ".join(sorted(missing)), header=", ".join(header)))
    rows = []
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(rows) >= MAX_ROWS:
            raise CsvImportError(msg(N_("Too many rows (more than %(n)s); split the file."), n=MAX_ROWS))
        raw = delimiter.join(values)
        if len(values) > len(header):
            rows.append((line, {"__error__": msg(N_("%(n)s values but the header has %(columns)s columns"),
                                                 n=len(values), columns=len(header))}, raw))
            continue
        rows.append((line, {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)}, raw))
    return header, rows


def _of_site(rows: list, sites: list, site_value: str, problems: list) -> list:
    """``rows`` (sources, pools) of the row's ``site`` column when it names one site; all of them when
    the column is empty; a problem noted when it names none or several."""
    if not site_value:
        return rows
    site = _by_name_or_id(sites, site_value)
    if site is None or isinstance(site, list):
        problems.append(msg(N_("no single site named %(name)s"), name=repr(site_value)))
        return rows
    return [r for r in rows if r.site_id == site.id]


def _by_name_or_id(items: list, value: str):
    if value.isdigit():
        for item in items:
            if item.id == int(value):
                return item
    wanted = value.casefold()
    matches = [item for item in items if item.name.casefold() == wanted]
    return matches[0] if len(matches) == 1 else (matches or None)


def _bool(value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(msg(N_("enabled must be yes or no, got %(value)s"), value=repr(value)))


def parse_numbers_csv(text: str, session: Session, region: str = "RU") -> tuple[list[NumberRow], list[RowError]]:
    """Columns: number (required), site, source, pool, label, enabled.

    ``site`` may be omitted when there is exactly one site; sources and pools are looked up by
    name (or id) within the row's site.  A number already in the database becomes an update,
    with what it changes and the warnings a move deserves.
    """
    _, rows = _reader(text, {"number"})
    sites = list(session.scalars(select(Site)))
    sources = list(session.scalars(select(Source)))
    pools = list(session.scalars(select(NumberPool)))
    existing = {n.number: n for n in session.scalars(select(TrackingNumber))}
    names = _Names(sites, sources, pools)
    good: list[NumberRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line, values, raw in rows:
        if "__error__" in values:
            errors.append(RowError(line, (values["__error__"],), raw))
            continue
        problems: list[Message] = []
        number = None
        try:
            number = normalize(values.get("number"), region)
        except PhoneNumberError:
            problems.append(msg(N_("%(value)s is not a phone number"), value=repr(values.get("number") or "")))
        if number and number in seen:
            problems.append(msg(N_("number %(number)s already appears on line %(line)s"), number=number,
                                line=seen[number]))
        site = None
        site_value = values.get("site", "")
        if site_value:
            site = _by_name_or_id(sites, site_value)
            if site is None:
                problems.append(msg(N_("no site named %(name)s"), name=repr(site_value)))
            elif isinstance(site, list):
                problems.append(msg(N_("several sites are named %(name)s; use the site id"), name=repr(site_value)))
                site = None
        elif len(sites) == 1:
            site = sites[0]
        elif sites:
            problems.append(msg(N_("column 'site' is required when there is more than one site")))
        else:
            problems.append(msg(N_("create a site first")))
        source = pool = None
        if site is not None:
            source_value = values.get("source", "")
            if source_value:
                source = _by_name_or_id([s for s in sources if s.site_id == site.id], source_value)
                if source is None or isinstance(source, list):
                    problems.append(msg(N_("no single source named %(name)s in site %(site)s"),
                                        name=repr(source_value), site=repr(site.name)))
                    source = None
            pool_value = values.get("pool", "")
            if pool_value:
                pool = _by_name_or_id([p for p in pools if p.site_id == site.id], pool_value)
                if pool is None or isinstance(pool, list):
                    problems.append(msg(N_("no single pool named %(name)s in site %(site)s"),
                                        name=repr(pool_value), site=repr(site.name)))
                    pool = None
        enabled = True
        try:
            enabled = _bool(values.get("enabled", ""))
        except ValueError as exc:
            problems.append(exc.args[0])
        label = values.get("label") or None
        if label and len(label) > 200:
            problems.append(msg(N_("label is longer than 200 characters")))
        if problems:
            errors.append(RowError(line, tuple(problems), raw))
            continue
        seen[number] = line
        row = NumberRow(line=line, number=number, site_id=site.id, source_id=source.id if source else None,
                        pool_id=pool.id if pool else None, label=label, enabled=enabled,
                        action="update" if number in existing else "create", site_name=site.name,
                        source_name=source.name if source else None, pool_name=pool.name if pool else None)
        if number in existing:
            row.changes, row.warnings = _number_changes(existing[number], row, names)
        good.append(row)
    return good, errors


class _Names:
    """Names of the rows an existing number points at, for the preview's "old" side."""

    def __init__(self, sites: list, sources: list, pools: list):
        self.site = {s.id: s.name for s in sites}
        self.source = {s.id: s.name for s in sources}
        self.pool = {p.id: p.name for p in pools}


def _number_changes(old: TrackingNumber, new: NumberRow, names: _Names) -> tuple[list[Change], list[Message]]:
    """What applying ``new`` changes on ``old``, and a warning for each move that changes where
    the number's calls are attributed or whether visitors are shown it."""
    before = {"site": names.site.get(old.site_id), "source": names.source.get(old.source_id),
              "pool": names.pool.get(old.pool_id), "label": old.label, "enabled": bool(old.enabled)}
    after = {"site": new.site_name, "source": new.source_name, "pool": new.pool_name, "label": new.label,
             "enabled": new.enabled}
    changes = [Change(key, before[key], after[key]) for key in before if before[key] != after[key]]
    warnings: list[Message] = []
    was_pool, is_pool = old.pool_id is not None, new.pool_id is not None
    if old.site_id != new.site_id:
        warnings.append(msg(N_("moves from site %(old)s to site %(new)s"), old=before["site"], new=after["site"]))
    if was_pool and not is_pool and new.source_id is not None:
        warnings.append(msg(N_("leaves pool %(pool)s and becomes the static number of source %(source)s: visitors "
                               "are no longer shown it and its calls are all attributed to %(source)s"),
                            pool=before["pool"], source=after["source"]))
    elif was_pool and not is_pool:
        warnings.append(msg(N_("leaves pool %(pool)s: visitors are no longer shown it"), pool=before["pool"]))
    elif not was_pool and is_pool and old.source_id is not None:
        warnings.append(msg(N_("stops being the static number of source %(source)s and joins pool %(pool)s: its "
                               "calls are attributed to whichever visitor was shown it"),
                            source=before["source"], pool=after["pool"]))
    elif was_pool and is_pool and old.pool_id != new.pool_id:
        warnings.append(msg(N_("moves from pool %(old)s to pool %(new)s"), old=before["pool"], new=after["pool"]))
    elif not was_pool and not is_pool and old.source_id is not None and new.source_id is None:
        warnings.append(msg(N_("is no longer the static number of source %(source)s"), source=before["source"]))
    elif not was_pool and not is_pool and old.source_id is not None and old.source_id != new.source_id:
        warnings.append(msg(N_("its calls are attributed to %(new)s instead of %(old)s"),
                            old=before["source"], new=after["source"] or "—"))
    return changes, warnings


def apply_numbers(session: Session, rows: list[NumberRow]) -> dict[str, int]:
    """Create or update the parsed numbers; the caller commits.  Returns counts per action."""
    counts = {"create": 0, "update": 0}
    existing = {n.number: n for n in session.scalars(
        select(TrackingNumber).where(TrackingNumber.number.in_([r.number for r in rows])))} if rows else {}
    for row in rows:
        number = existing.get(row.number)
        if number is None:
            number = TrackingNumber(number=row.number)
            session.add(number)
            counts["create"] += 1
        else:
            counts["update"] += 1
        number.site_id = row.site_id
        number.source_id = row.source_id
        number.pool_id = row.pool_id
        number.label = row.label
        number.enabled = row.enabled
    session.flush()
    return counts


def _date(value: str) -> dt.date:
    for fmt in ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(value.strip(), fmt).date()
        except ValueError:
            continue
    raise ValueError(msg(N_("date must look like 2026-11-23 or 23.11.2026, got %(value)s"), value=repr(value)))


def _amount(value: str) -> Decimal:
    cleaned = value.replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(msg(N_("amount is not a number: %(value)s"), value=repr(value))) from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(msg(N_("amount must be zero or more, got %(value)s"), value=repr(value)))
    if amount >= Decimal("1e12"):
        raise ValueError(msg(N_("amount is too large: %(value)s"), value=repr(value)))
    return amount.quantize(Decimal("0.01"))


def parse_ad_costs_csv(text: str, session: Session) -> tuple[list[CostRow], list[RowError]]:
    """Columns: source, date, amount (required); site, currency (optional).

    Amounts may use a decimal comma and spaces (``12 345,50``).  A (source, day) already
    imported becomes an update (its old amount shown), so re-importing a corrected export is safe.
    """
    _, rows = _reader(text, {"source", "date", "amount"})
    sites = list(session.scalars(select(Site)))
    sources = list(session.scalars(select(Source)))
    existing = {(c.source_id, c.day): c for c in session.scalars(select(AdCost))}
    good: list[CostRow] = []
    errors: list[RowError] = []
    seen: dict[tuple[int, dt.date], int] = {}
    for line, values, raw in rows:
        if "__error__" in values:
            errors.append(RowError(line, (values["__error__"],), raw))
            continue
        problems: list[Message] = []
        candidates = _of_site(sources, sites, values.get("site", ""), problems)
        source = _by_name_or_id(candidates, values.get("source", "")) if values.get("source") else None
        if isinstance(source, list):
            problems.append(msg(N_("several sources are named %(name)s; add a site column or use the id"),
                                name=repr(values["source"])))
            source = None
        elif source is None:
            problems.append(msg(N_("no source named %(name)s"), name=repr(values.get("source", ""))))
        day = amount = None
        try:
            day = _date(values.get("date", ""))
        except ValueError as exc:
            problems.append(exc.args[0])
        try:
            amount = _amount(values.get("amount", ""))
        except ValueError as exc:
            problems.append(exc.args[0])
        currency = (values.get("currency") or "RUB").upper()
        if len(currency) != 3 or not currency.isalpha():
            problems.append(msg(N_("currency must be a 3-letter code, got %(value)s"), value=repr(currency)))
        if source is not None and day is not None and (source.id, day) in seen:
            problems.append(msg(N_("source and date already appear on line %(line)s"), line=seen[(source.id, day)]))
        if problems:
            errors.append(RowError(line, tuple(problems), raw))
            continue
        seen[(source.id, day)] = line
        old = existing.get((source.id, day))
        row = CostRow(line=line, source_id=source.id, day=day, amount=amount, currency=currency,
                      action="update" if old is not None else "create", source_name=source.name)
        if old is not None:
            row.changes = [Change(key, before, after) for key, before, after in
                           (("amount", old.amount, amount), ("currency", old.currency, currency)) if before != after]
        good.append(row)
    return good, errors


def apply_ad_costs(session: Session, rows: list[CostRow]) -> dict[str, int]:
    counts = {"create": 0, "update": 0}
    for row in rows:
        cost = session.scalars(select(AdCost).where(AdCost.source_id == row.source_id, AdCost.day == row.day)).first()
        if cost is None:
            session.add(AdCost(source_id=row.source_id, day=row.day, amount=row.amount, currency=row.currency))
            counts["create"] += 1
        else:
            cost.amount = row.amount
            cost.currency = row.currency
            counts["update"] += 1
    session.flush()
    return counts


# ---------------------------------------------------------------- tracking prices (#27)


@dataclass
class PriceRow:
    """A number's or a pool's prices: empty cells are None (a number then inherits its pool's value)."""

    line: int
    target: str  # number|pool
    number_id: int | None
    pool_id: int | None
    name: str  # the number, or the pool's name
    site_name: str
    monthly_rent: Decimal | None
    minute_price: Decimal | None
    currency: str
    rented_from: dt.date | None
    rented_until: dt.date | None
    action: str  # create|update
    changes: list[Change] = field(default_factory=list)
    warnings: list[Message] = field(default_factory=list)


PRICE_FIELDS = ("monthly_rent", "minute_price", "currency", "rented_from", "rented_until")


def _price(value: str, column: str, places: str) -> Decimal | None:
    """A price cell: empty is None; a decimal comma and spaces are accepted; never negative."""
    if not value.strip():
        return None
    cleaned = value.replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount < 0 or amount >= Decimal("1e9"):
        raise ValueError(msg(N_("%(column)s must be a number, zero or more, got %(value)s"), column=column,
                             value=repr(value)))
    return amount.quantize(Decimal(places))


def parse_prices_csv(text: str, session: Session, region: str = "RU") -> tuple[list[PriceRow], list[RowError]]:
    """Columns: number or pool (one per row), monthly_rent, minute_price (at least one of the two
    columns); site (to tell pools of the same name apart), currency (default RUB), rented_from,
    rented_until (numbers only: the days the rent counts, for part months).  An empty price cell
    is no value: a number then pays its pool's.  A number or pool that has prices becomes an
    update, with what it changes."""
    header, rows = _reader(text, set())
    if "number" not in header and "pool" not in header:
        raise CsvImportError(msg(N_("Missing column(s): %(missing)s; the header is: %(header)s."),
                                 missing="number | pool", header=", ".join(header)))
    if "monthly_rent" not in header and "minute_price" not in header:
        raise CsvImportError(msg(N_("Missing column(s): %(missing)s; the header is: %(header)s."),
                                 missing="monthly_rent | minute_price", header=", ".join(header)))
    sites = list(session.scalars(select(Site)))
    site_names = {s.id: s.name for s in sites}
    pools = list(session.scalars(select(NumberPool)))
    numbers = {n.number: n for n in session.scalars(select(TrackingNumber))}
    prices = list(session.scalars(select(TrackingPrice)))
    by_number = {p.number_id: p for p in prices if p.number_id is not None}
    by_pool = {p.pool_id: p for p in prices if p.pool_id is not None}
    good: list[PriceRow] = []
    errors: list[RowError] = []
    seen: dict[tuple[str, int], int] = {}
    for line, values, raw in rows:
        if "__error__" in values:
            errors.append(RowError(line, (values["__error__"],), raw))
            continue
        problems: list[Message] = []
        number_value, pool_value = values.get("number", ""), values.get("pool", "")
        number = pool = None
        if number_value and pool_value:
            problems.append(msg(N_("give a number or a pool, not both")))
        elif number_value:
            try:
                number = numbers.get(normalize(number_value, region))
                if number is None:
                    problems.append(msg(N_("no tracking number %(value)s"), value=repr(number_value)))
            except PhoneNumberError:
                problems.append(msg(N_("%(value)s is not a phone number"), value=repr(number_value)))
        elif pool_value:
            candidates = _of_site(pools, sites, values.get("site", ""), problems)
            pool = _by_name_or_id(candidates, pool_value)
            if pool is None or isinstance(pool, list):
                problems.append(msg(N_("no single pool named %(name)s; add a site column or use the id"),
                                    name=repr(pool_value)))
                pool = None
        else:
            problems.append(msg(N_("a number or a pool is required")))
        parsed: dict[str, Any] = {}
        for column, places in (("monthly_rent", "0.01"), ("minute_price", "0.0001")):
            try:
                parsed[column] = _price(values.get(column, ""), column, places)
            except ValueError as exc:
                problems.append(exc.args[0])
        for column in ("rented_from", "rented_until"):
            value = values.get(column, "")
            parsed[column] = None
            if value.strip():
                if pool_value and not number_value:
                    problems.append(msg(N_("%(column)s is for numbers, not pools"), column=column))
                    continue
                try:
                    parsed[column] = _date(value)
                except ValueError as exc:
                    problems.append(exc.args[0])
        if parsed["rented_from"] and parsed["rented_until"] and parsed["rented_from"] > parsed["rented_until"]:
            problems.append(msg(N_("rented_from is after rented_until")))
        currency = (values.get("currency") or "RUB").upper()
        if len(currency) != 3 or not currency.isalpha():
            problems.append(msg(N_("currency must be a 3-letter code, got %(value)s"), value=repr(currency)))
        key = ("number", number.id) if number else ("pool", pool.id) if pool else None
        if key is not None and key in seen:
            problems.append(msg(N_("already appears on line %(line)s"), line=seen[key]))
        if problems:
            errors.append(RowError(line, tuple(problems), raw))
            continue
        seen[key] = line
        old = by_number.get(number.id) if number else by_pool.get(pool.id)
        row = PriceRow(line=line, target=key[0], number_id=number.id if number else None,
                       pool_id=pool.id if pool else None, name=number.number if number else pool.name,
                       site_name=site_names.get((number or pool).site_id, ""), currency=currency,
                       action="update" if old is not None else "create", **parsed)
        if old is not None:
            row.changes = [Change(name, getattr(old, name), getattr(row, name)) for name in PRICE_FIELDS
                           if getattr(old, name) != getattr(row, name)]
        if number is not None and number.pool_id is not None and row.monthly_rent is None \
                and by_pool.get(number.pool_id) is None:
            row.warnings.append(msg(N_("no rent here and none on its pool: the number's rent is not counted")))
        good.append(row)
    return good, errors


def apply_prices(session: Session, rows: list[PriceRow]) -> dict[str, int]:
    """Create or replace the parsed prices; the caller commits."""
    counts = {"create": 0, "update": 0}
    for row in rows:
        column = TrackingPrice.number_id if row.number_id is not None else TrackingPrice.pool_id
        target = row.number_id if row.number_id is not None else row.pool_id
        price = session.scalars(select(TrackingPrice).where(column == target)).first()
        if price is None:
            price = TrackingPrice(number_id=row.number_id, pool_id=row.pool_id)
            session.add(price)
            counts["create"] += 1
        else:
            counts["update"] += 1
        for name in PRICE_FIELDS:
            setattr(price, name, getattr(row, name))
    session.flush()
    return counts
