"""Full-text search across transcripts: SQLite FTS5, PostgreSQL's GIN-indexed tsvector.

Both index ``Transcript.search_text``, the call's words already normalised by ``speech.normalize``
(Russian lemmas, English stems), and the query is normalised the same way: "цену" finds a call that
said "ценой" on either database, and a mixed Russian-English call needs no choice of one language's
configuration (PostgreSQL's ``simple`` configuration, since the words are already reduced).

The index is part of the schema (``db.models.TRANSCRIPT_SEARCH_DDL``, migration 0025): SQLite's FTS5
table follows ``search_text`` by triggers, so searching only reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from astertrack.db.models import Call, Transcript
from astertrack.speech.normalize import norm, normalise

MAX_QUERY_WORDS = 8
MAX_QUERY_LENGTH = 200


@dataclass(frozen=True)
class Hit:
    call_id: int
    at: float  # seconds into the recording of the first matching word
    snippet: str


def search_text(words: list[dict]) -> str:
    return " ".join(norm(w["w"]) for w in words if w.get("w"))


def query_terms(query: str) -> list[str]:
    """The query's normalised words, capped; only letters and digits survive, so no search syntax
    typed by a user reaches FTS5 or to_tsquery."""
    return list(dict.fromkeys(normalise(query[:MAX_QUERY_LENGTH])))[:MAX_QUERY_WORDS]


def search(session: Session, query: str, site_ids: list[int] | None = None, limit: int = 50) -> list[Hit]:
    """Calls whose transcript holds every word of the query (any word form), newest first."""
    terms = query_terms(query)
    if not terms:
        return []
    if session.get_bind().dialect.name == "sqlite":
        match = " ".join('"' + t.replace('"', '""') + '"' for t in terms)
        condition = text("transcripts.id IN (SELECT rowid FROM transcript_fts WHERE transcript_fts MATCH :q)")
        params = {"q": match}
    else:
        condition = text("to_tsvector('simple', coalesce(transcripts.search_text, '')) "
                         "@@ to_tsquery('simple', :q)")
        params = {"q": " & ".join("'" + t.replace("'", "''") + "'" for t in terms)}
    stmt = (select(Transcript.call_id, Transcript.words, Transcript.text)
            .join(Call, Call.id == Transcript.call_id)
            .where(condition, Transcript.status == "done")
            .order_by(Call.started_at.desc(), Call.id.desc()).limit(limit))
    if site_ids is not None:
        stmt = stmt.where(Call.site_id.in_(site_ids))
    hits = []
    for call_id, words, body in session.execute(stmt, params):
        at, snippet = _where(words or [], terms[0], body or "")
        hits.append(Hit(call_id, at, snippet))
    return hits


def _where(words: list[dict], term: str, body: str) -> tuple[float, str]:
    """The second of the first word in the query's first term's form, and the words around it."""
    for i, w in enumerate(words):
        if norm(w.get("w", "")) == term:
            around = words[max(0, i - 5): i + 6]
            return float(w.get("s") or 0.0), " ".join(x.get("w", "") for x in around)
    return 0.0, body[:120]
