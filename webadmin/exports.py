"""CSV downloads of any size: rows are written as the database cursor yields them, so a
million-call export costs the memory of one batch (the page's own query, streamed)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from typing import Any

from flask import Response, stream_with_context
from sqlalchemy.orm import Session

from webadmin.db import session_factory
from webadmin.filters import _cell

FLUSH_EVERY = 500  # rows per chunk sent to the client


def stream_csv(filename: str, header: list[str], rows: Callable[[Session], Iterable[Iterable[Any]]]) -> Response:
    """A streamed CSV (BOM for spreadsheets, formula cells neutralised like ``csv_response``).

    ``rows(session)`` is called inside the response with a session of its own, which is closed
    when the download ends or the client goes away.
    """
    factory = session_factory()

    def generate():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow(header)
        with factory() as db:
            for n, row in enumerate(rows(db), 1):
                writer.writerow([_cell(value) for value in row])
                if n % FLUSH_EVERY == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})
