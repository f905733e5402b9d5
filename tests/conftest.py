"""Shared fixtures.  Every database test runs twice: on SQLite and on PostgreSQL.

PostgreSQL comes from ASTERTRACK_TEST_PG_URL (default: postgres@127.0.0.1:5432/test).  Each
pytest run works in its own freshly created database, so parallel runs never collide.  When
the server is unreachable: in CI that is a failure; on a newcomer's machine we start a
throwaway cluster from the installed PostgreSQL binaries, and only without those do we run
the SQLite half and say loudly what was skipped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from astertrack.db import config_revision
from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import Base
from astertrack.samples.processes import free_port, throwaway_postgres
from tests.integrations.capture import CaptureServer

REPO = Path(__file__).resolve().parent.parent
RECORDED_ASTERISK = REPO / "tests" / "fixtures" / "asterisk"  # real Asterisk 20 traffic, kept byte for byte
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CHROMIUM = os.environ.get("ASTERTRACK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
_skipped_pg_reason: list[str] = []
# Every process this pytest run starts inherits the marker, so one still running at the end is
# recognised even after it was re-parented to PID 1 (see pytest_sessionfinish).
RUN_MARKER = "ASTERTRACK_TEST_RUN"
_leftovers: list[str] = []


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through Playwright, one per test module (the real browser of the standards)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM}")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"])
        yield chromium
        chromium.close()
_skipped_browser: list[str] = []


def _pg_reachable(url: str) -> bool:
    parsed = make_url(url)
    try:
        with socket.create_connection((parsed.host or "127.0.0.1", parsed.port or 5432), timeout=2):
            pass
    except OSError:
        return False
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()


def _find_pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _start_throwaway_cluster() -> tuple[str, callable] | None:
    bindir = _find_pg_bin()
    if bindir is None:
        return None
    datadir = Path(tempfile.mkdtemp(prefix="astertrack-pg-"))
    port = free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(datadir, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)
    subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(datadir), "-w", "-l", str(datadir / "log"),
                             "-o", f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)

    def stop() -> None:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(datadir, ignore_errors=True)

    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", stop


@pytest.fixture(scope="session")
def pg_admin_url():
    """URL of a PostgreSQL server we may create databases on, or None (skip loudly)."""
    url = os.environ.get("ASTERTRACK_TEST_PG_URL", DEFAULT_PG)
    if _pg_reachable(url):
        yield url
        return
    if os.environ.get("CI"):
        pytest.exit(f"PostgreSQL is unreachable at {url}; in CI that is a failure, not a skip", returncode=1)
    started = _start_throwaway_cluster()
    if started is None:
        _skipped_pg_reason.append(f"PostgreSQL unreachable at {url} and no PostgreSQL binaries installed")
        yield None
        return
    cluster_url, stop = started
    try:
        yield cluster_url
    finally:
        stop()


def scratch_pg_database(admin_url: str, prefix: str = "astertrack_t"):
    """A uniquely named PostgreSQL database for a test, dropped afterwards (the samples' one helper)."""
    return throwaway_postgres(admin_url, prefix)


@pytest.fixture(scope="session")
def pg_database_url(pg_admin_url):
    """A database of our own for this pytest run, schema created once."""
    if pg_admin_url is None:
        yield None
        return
    with scratch_pg_database(pg_admin_url) as url:
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        yield url


def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        config_revision.seed(conn)  # the counter's row went with the TRUNCATE; the triggers stay
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A migrated-schema, empty database URL on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'astertrack.db'}"
        engine = make_engine(url)
        Base.metadata.create_all(engine)
        engine.dispose()
        yield url
        return
    pg_url = request.getfixturevalue("pg_database_url")
    if pg_url is None:
        pytest.skip("PostgreSQL half skipped: " + "; ".join(_skipped_pg_reason))
    _truncate_all(pg_url)
    yield pg_url


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine):
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory):
    with session_factory() as session:
        yield session


@pytest.fixture
def receiver():
    """A CRM (or an ad platform) on loopback: records what we post and answers 200 unless told."""
    with CaptureServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    """A database with no tables at all (for migrations and `astertrack init`), on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin_url = request.getfixturevalue("pg_admin_url")
    if admin_url is None:
        pytest.skip("no PostgreSQL available")
    with scratch_pg_database(admin_url, "astertrack_mig") as url:
        yield url


def pytest_configure(config):
    os.environ[RUN_MARKER] = uuid.uuid4().hex  # a nested pytest run gets a marker of its own


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state) of every process we can see."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def _started_by_this_run(marker: str, me: int) -> dict[int, str]:
    """Live processes this run started: our descendants, and any process carrying our marker
    in the environment it was started with (a daemon that double-forked to PID 1)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(children.get(me, []))
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    needle = f"{RUN_MARKER}={marker}".encode()
    for pid in table:
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.add(pid)
        except OSError:
            continue
    named = {}
    for pid in sorted(found - {me}):
        if table.get(pid, (0, 0, "Z"))[2] in ("Z", "X"):
            continue  # already dead, waiting to be reaped
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        named[pid] = command or f"[pid {pid}]"
    return named


def _kill(pids: list[int], timeout: float = 5.0) -> None:
    """SIGTERM, wait, SIGKILL, by process id only (each a process this run started)."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            table = _processes()
            if all(table.get(pid, (0, 0, "Z"))[2] in ("Z", "X") for pid in pids):
                return
            time.sleep(0.05)


def pytest_sessionfinish(session, exitstatus):
    """The run fails when a process it started is still alive: tests stop what they start.

    Session fixtures (the throwaway PostgreSQL cluster, the browser) are torn down by now, so
    whatever is left was leaked; it is killed here, and the summary names it.
    """
    marker = os.environ.get(RUN_MARKER)
    if not marker:
        return
    leftovers = _started_by_this_run(marker, os.getpid())
    if not leftovers:
        return
    _kill(list(leftovers))
    _leftovers.extend(f"pid {pid}: {command}" for pid, command in leftovers.items())
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _leftovers:
        terminalreporter.write_sep("!", "PROCESSES LEFT RUNNING BY THE TESTS (now killed)", red=True, bold=True)
        for line in _leftovers:
            terminalreporter.write_line(f"  {line}", red=True)
        terminalreporter.write_line("  Start processes with astertrack.samples.processes.spawn/running and stop them "
                                    "with stop_process in a finally or fixture teardown.", red=True)
    if _skipped_pg_reason:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS SKIPPED", red=True, bold=True)
        for reason in _skipped_pg_reason:
            terminalreporter.write_line(f"  {reason}: only the SQLite half of the database tests ran.", red=True)
    if _skipped_browser:
        terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"  {_skipped_browser[0]}", red=True)
