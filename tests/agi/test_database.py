"""The AGI's SQLite engine: commits never checkpoint the WAL; a background thread does."""

from __future__ import annotations

import time

from sqlalchemy import text

from agi.database import _CHECKPOINTERS, agi_engine, close_engine
from tests.agi.conftest import make_config


def _fill_wal(engine, rows: int = 3000) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, body TEXT)"))
    for _ in range(0, rows, 500):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO filler (body) VALUES (:b)"),
                         [{"b": "x" * 2000} for _ in range(500)])


def test_commits_leave_the_checkpoint_to_the_background_thread(tmp_path):
    path = tmp_path / "agi.db"
    engine = agi_engine(make_config(tmp_path, f"sqlite:///{path}"))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        before = path.stat().st_size
        _fill_wal(engine)  # about 1500 pages: past SQLite's 1000-page automatic checkpoint
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 4_000_000
        # no commit copied the log into the database file ...
        assert path.stat().st_size == before
        # ... the checkpoint thread does, within a couple of its 1 s rounds
        deadline = time.monotonic() + 5
        while path.stat().st_size < 4_000_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.stat().st_size > 4_000_000
    finally:
        close_engine(engine)


def test_closing_the_engine_stops_the_thread_and_never_recreates_a_deleted_database(tmp_path):
    path = tmp_path / "agi.db"
    engine = agi_engine(make_config(tmp_path, f"sqlite:///{path}"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER)"))
    checkpointer = _CHECKPOINTERS[engine]
    assert checkpointer.is_alive()
    close_engine(engine)
    assert not checkpointer.is_alive()
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    time.sleep(1.5)
    assert not path.exists()
