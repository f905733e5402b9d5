"""What refers to a row: the rows of other tables whose foreign keys name it.

A settings row that anything refers to (calls, leads, sessions, ad costs, numbers, rules,
group memberships...) is archived, never deleted: a delete would cascade away history (ad
costs) or silently detach it (a call's source).  The referrers are read from the schema's
foreign keys, so a table added later is counted without touching this module."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import MetaData, func, or_, select
from sqlalchemy.orm import Session

from astertrack.db.models import Base

# Rows that only describe the change itself, never a reason to keep the row
IGNORED = frozenset({"audit_log"})


def referrers(table: str, metadata: MetaData = Base.metadata) -> dict[str, tuple[str, ...]]:
    """Each table with a foreign key to ``table`` -> the names of those columns (a row of
    ``table`` referring to itself counts too; tables in ``IGNORED`` do not)."""
    found: dict[str, list[str]] = {}
    for other in metadata.sorted_tables:
        if other.name in IGNORED:
            continue
        for fk in sorted(other.foreign_keys, key=lambda fk: fk.parent.name):
            if fk.column.table.name == table:
                found.setdefault(other.name, []).append(fk.parent.name)
    return {name: tuple(columns) for name, columns in found.items()}


def count_references(session: Session, table: str, row_id: int,
                     metadata: MetaData = Base.metadata) -> dict[str, int]:
    """Referring table -> how many of its rows name row ``row_id`` of ``table`` (only tables
    with at least one)."""
    counts: dict[str, int] = {}
    for name, columns in referrers(table, metadata).items():
        other = metadata.tables[name]
        count = session.execute(select(func.count()).select_from(other)
                                .where(or_(*(other.c[column] == row_id for column in columns)))).scalar_one()
        if count:
            counts[name] = int(count)
    return counts


def deletable(counts: Mapping[str, int]) -> bool:
    """Nothing refers to the row: deleting it loses no history."""
    return not any(counts.values())
