"""One SQLAlchemy session per request, cached on ``g`` and closed in teardown (flaskr's get_db)."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from astertrack.db.engine import make_engine, make_session_factory

EXTENSION = "astertrack_db"


def init_app(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"], pool_size=app.config.get("DATABASE_POOL_SIZE", 10))
    app.extensions[EXTENSION] = make_session_factory(engine)
    app.teardown_appcontext(close_session)


def session_factory() -> sessionmaker[Session]:
    return current_app.extensions[EXTENSION]


def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = session_factory()()
    return g.db_session


def close_session(exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()


def commit_or_conflict(session: Session) -> bool:
    """Commit; on a unique or foreign-key violation roll back and return False (the form says why)."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True
