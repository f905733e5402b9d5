"""CSV imports for tracking numbers and ad costs: parse first (a preview with per-row errors), apply later.

Parsing never writes.  A file with errors can still be applied for its good rows, and every
bad row says its line number and what is wrong, so nothing is lost silently.  Both ``,``
and ``;`` separators are accepted (spreadsheets in Russian locales write ``;``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import AdCost, NumberPool, Site, Source, TrackingNumber
from astertrack.phones import PhoneNumberError, normalize

MAX_ROWS = 20000
TRUE_WORDS = {"", "1", "yes", "y", "true", "on", "да"}
FALSE_WORDS = {"0", "no", "n", "false", "off", "нет"}


class CsvImportError(ValueError):
    """The file as a whole cannot be read (no header, wrong columns, too large)."""


@dataclass(frozen=True)
class RowError:
    line: int
    message: str
    raw: str = ""


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


@dataclass
class CostRow:
    line: int
    source_id: int
    day: dt.date
    amount: Decimal
    currency: str
    action: str  # create|update
    source_name: str = ""


def _reader(text: str, required: set[str]) -> tuple[list[str], list[tuple[int, dict[str, str], str]]]:
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise CsvImportError("the file is empty; the first line must be a header")
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    missing = required - set(header)
    if missing:
        raise CsvImportError(f"missing column(s): {', '.join(sorted(missing))}; header is: {', '.join(header)}")
    rows = []
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(rows) >= MAX_ROWS:
            raise CsvImportError(f"too many rows (more than {MAX_ROWS}); split the file")
        raw = delimiter.join(values)
        if len(values) > len(header):
            rows.append((line, {"__error__": f"{len(values)} values but the header has {len(header)} columns"}, raw))
            continue
        rows.append((line, {h: (values[i].strip() if i < len(values) else "") for i, h in enumerate(header)}, raw))
    return header, rows


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
    raise ValueError(f"enabled must be yes or no, got {value!r}")


def parse_numbers_csv(text: str, session: Session, region: str = "RU") -> tuple[list[NumberRow], list[RowError]]:
    """Columns: number (required), site, source, pool, label, enabled.

    ``site`` may be omitted when there is exactly one site; sources and pools are looked up by
    name (or id) within the row's site.  A number already in the database becomes an update.
    """
    _, rows = _reader(text, {"number"})
    sites = list(session.scalars(select(Site)))
    sources = list(session.scalars(select(Source)))
    pools = list(session.scalars(select(NumberPool)))
    existing = {n.number: n for n in session.scalars(select(TrackingNumber))}
    good: list[NumberRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for line, values, raw in rows:
        if "__error__" in values:
            errors.append(RowError(line, values["__error__"], raw))
            continue
        problems: list[str] = []
        number = None
        try:
            number = normalize(values.get("number"), region)
        except PhoneNumberError as exc:
            problems.append(str(exc))
        if number and number in seen:
            problems.append(f"number {number} already appears on line {seen[number]}")
        site = None
        site_value = values.get("site", "")
        if site_value:
            site = _by_name_or_id(sites, site_value)
            if site is None:
                problems.append(f"no site named {site_value!r}")
            elif isinstance(site, list):
                problems.append(f"several sites are named {site_value!r}; use the site id")
                site = None
        elif len(sites) == 1:
            site = sites[0]
        else:
            problems.append("column 'site' is required when there is more than one site" if sites
                            else "create a site first")
        source = pool = None
        if site is not None:
            source_value = values.get("source", "")
            if source_value:
                source = _by_name_or_id([s for s in sources if s.site_id == site.id], source_value)
                if source is None or isinstance(source, list):
                    problems.append(f"no single source named {source_value!r} in site {site.name!r}")
                    source = None
            pool_value = values.get("pool", "")
            if pool_value:
                pool = _by_name_or_id([p for p in pools if p.site_id == site.id], pool_value)
                if pool is None or isinstance(pool, list):
                    problems.append(f"no single pool named {pool_value!r} in site {site.name!r}")
                    pool = None
        enabled = True
        try:
            enabled = _bool(values.get("enabled", ""))
        except ValueError as exc:
            problems.append(str(exc))
        label = values.get("label") or None
        if label and len(label) > 200:
            problems.append("label is longer than 200 characters")
        if problems:
            errors.append(RowError(line, "; ".join(problems), raw))
            continue
        seen[number] = line
        good.append(NumberRow(line=line, number=number, site_id=site.id, source_id=source.id if source else None,
                              pool_id=pool.id if pool else None, label=label, enabled=enabled,
                              action="update" if number in existing else "create", site_name=site.name,
                              source_name=source.name if source else None, pool_name=pool.name if pool else None))
    return good, errors


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
    raise ValueError(f"date must look like 2026-11-23 or 23.11.2026, got {value!r}")


def _amount(value: str) -> Decimal:
    cleaned = value.replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"amount is not a number: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"amount must be zero or more, got {value!r}")
    if amount >= Decimal("1e12"):
        raise ValueError(f"amount is too large: {value!r}")
    return amount.quantize(Decimal("0.01"))


def parse_ad_costs_csv(text: str, session: Session) -> tuple[list[CostRow], list[RowError]]:
    """Columns: source, date, amount (required); site, currency (optional).

    Amounts may use a decimal comma and spaces (``12 345,50``).  A (source, day) already
    imported becomes an update, so re-importing a corrected export is safe.
    """
    _, rows = _reader(text, {"source", "date", "amount"})
    sites = list(session.scalars(select(Site)))
    sources = list(session.scalars(select(Source)))
    existing = {(c.source_id, c.day) for c in session.scalars(select(AdCost))}
    good: list[CostRow] = []
    errors: list[RowError] = []
    seen: dict[tuple[int, dt.date], int] = {}
    for line, values, raw in rows:
        if "__error__" in values:
            errors.append(RowError(line, values["__error__"], raw))
            continue
        problems: list[str] = []
        candidates = sources
        site_value = values.get("site", "")
        if site_value:
            site = _by_name_or_id(sites, site_value)
            if site is None or isinstance(site, list):
                problems.append(f"no single site named {site_value!r}")
            else:
                candidates = [s for s in sources if s.site_id == site.id]
        source = _by_name_or_id(candidates, values.get("source", "")) if values.get("source") else None
        if isinstance(source, list):
            problems.append(f"several sources are named {values['source']!r}; add a site column or use the id")
            source = None
        elif source is None:
            problems.append(f"no source named {values.get('source', '')!r}")
        day = amount = None
        try:
            day = _date(values.get("date", ""))
        except ValueError as exc:
            problems.append(str(exc))
        try:
            amount = _amount(values.get("amount", ""))
        except ValueError as exc:
            problems.append(str(exc))
        currency = (values.get("currency") or "RUB").upper()
        if len(currency) != 3 or not currency.isalpha():
            problems.append(f"currency must be a 3-letter code, got {currency!r}")
        if source is not None and day is not None and (source.id, day) in seen:
            problems.append(f"source and date already appear on line {seen[(source.id, day)]}")
        if problems:
            errors.append(RowError(line, "; ".join(problems), raw))
            continue
        seen[(source.id, day)] = line
        good.append(CostRow(line=line, source_id=source.id, day=day, amount=amount, currency=currency,
                            action="update" if (source.id, day) in existing else "create", source_name=source.name))
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
