"""The admin CLI, driven with click's runner against real databases."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from astertrack.cli.main import main
from astertrack.config import load_config
from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import Call, Deal, Lead, Manager, Site, Source, TrackingNumber, User, VisitorSession
from astertrack.passwords import verify_password
from astertrack.samples.demo import load_demo
from astertrack.samples.processes import spawn, stop_process


@pytest.fixture
def runner():
    return CliRunner()


def _config_for(tmp_path, db_url):
    path = tmp_path / "astertrack.conf"
    path.write_text(f"[database]\nurl = {db_url}\n", encoding="utf-8")
    return str(path)


def test_init_writes_config_once_migrates_and_creates_the_admin(runner, tmp_path, empty_url):
    etc = tmp_path / "etc"
    args = ["init", "--config-dir", str(etc), "--database-url", empty_url, "--data-dir", str(tmp_path / "data"),
            "--admin-password", "correct-horse"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    secrets = etc / "conf.d" / "10-secrets.conf"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o640
    config = load_config(etc / "astertrack.conf", environ={})
    assert config.database["url"] == empty_url
    assert len(config.web["secret_key"]) >= 40 and config.ami["secret"]
    main_text = (etc / "astertrack.conf").read_text()
    assert config.ami["secret"] not in main_text and "secret_key =" not in main_text  # secrets stay in the 0640 file
    factory = make_session_factory(make_engine(empty_url))
    with factory() as session:
        admin = session.scalar(select(User).where(User.login == "admin"))
        assert admin.role == "admin" and verify_password(admin.password_hash, "correct-horse")

    edited = (etc / "astertrack.conf").read_text().replace("ring_timeout = 20", "ring_timeout = 42")
    assert "ring_timeout = 42" in edited
    (etc / "astertrack.conf").write_text(edited)
    before_secret = secrets.read_text()
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert "left as it is" in again.output and "secrets kept" in again.output
    assert (etc / "astertrack.conf").read_text() == edited and secrets.read_text() == before_secret
    with factory() as session:
        assert session.scalar(select(func.count(User.id))) == 1


def test_user_add_hashes_the_password_and_refuses_duplicates(runner, tmp_path, db_url):
    config = _config_for(tmp_path, db_url)
    result = runner.invoke(main, ["-c", config, "user", "add", "olga", "--role", "supervisor",
                                  "--password", "long-enough-pw"])
    assert result.exit_code == 0, result.output
    dup = runner.invoke(main, ["-c", config, "user", "add", "olga", "--password", "long-enough-pw"])
    assert dup.exit_code != 0 and "already exists" in dup.output
    short = runner.invoke(main, ["-c", config, "user", "add", "bob", "--role", "admin", "--password", "short"])
    assert short.exit_code != 0 and "at least 8" in short.output
    orphan = runner.invoke(main, ["-c", config, "user", "add", "m1", "--role", "manager", "--password", "long-enough-pw"])
    assert orphan.exit_code != 0 and "--manager-endpoint" in orphan.output
    with make_session_factory(make_engine(db_url))() as session:
        olga = session.scalar(select(User).where(User.login == "olga"))
        assert olga.role == "supervisor" and olga.password_hash != "long-enough-pw"
        assert session.scalar(select(func.count(User.id))) == 1


def test_invalid_config_gives_a_clear_error_not_a_traceback(runner, tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[database]\nurll = x\n")
    result = runner.invoke(main, ["-c", str(bad), "demo"])
    assert result.exit_code != 0
    assert "unknown key 'urll'" in result.output and "Traceback" not in result.output


def test_demo_loads_a_realistic_month_once(runner, tmp_path, db_url):
    config = _config_for(tmp_path, db_url)
    result = runner.invoke(main, ["-c", config, "demo", "--days", "5", "--calls-per-day", "40"])
    assert result.exit_code == 0, result.output
    assert "log in as admin / admin-demo-password" in result.output
    with make_session_factory(make_engine(db_url))() as session:
        calls = session.scalar(select(func.count(Call.id)))
        assert 100 < calls < 300
        outcomes = dict(session.execute(select(Call.outcome, func.count()).group_by(Call.outcome)).all())
        assert outcomes["answered"] > outcomes["missed"] > 0
        assert session.scalar(select(func.count(VisitorSession.id))) > calls
        assert session.scalar(select(func.count(Lead.id))) > 0
        assert session.scalar(select(func.count(Manager.id))) == 5
        assert session.scalar(select(func.count(Call.id)).where(Call.is_first_call.is_(False))) > 0
        kinds = set(session.scalars(select(Source.kind)))
        assert kinds == {"static", "dynamic"}
        assert session.scalar(select(func.count(TrackingNumber.id)).where(TrackingNumber.pool_id.is_not(None))) == 12
    again = runner.invoke(main, ["-c", config, "demo"])
    assert again.exit_code == 0 and "already has data" in again.output


def test_demo_is_deterministic(session):
    counts = load_demo(session, days=2, calls_per_day=20)
    assert counts["calls"] == session.scalar(select(func.count(Call.id)))
    assert counts["deals"] == session.scalar(select(func.count(Deal.id)))
    assert session.scalar(select(Site.name)) == "Окна Про (demo)"


def test_demo_crm_link_opens_the_caller_in_the_crm(session):
    """The demo's CRM link template uses only placeholders the pop-up fills in."""
    from webadmin.live.state import crm_link

    load_demo(session, days=1, calls_per_day=5)
    site = session.scalar(select(Site))
    call = session.scalars(select(Call).where(Call.caller_number.is_not(None))).first()
    link = crm_link(site.crm_url_template, call)
    assert link == "https://crm.example/contacts?phone=" + call.caller_number.replace("+", "%2B")
    assert "{" not in link and "}" not in link


def test_demo_calls_fall_inside_the_demo_s_own_working_hours_every_day(session):
    """Every demo call, Sundays included, is inside the hours of the rule that routed it and of
    the manager who took it: on the demo's own schedules nothing would have gone after-hours."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from astertrack.db.models import RoutingRule
    from astertrack.routing.schedule import is_open

    load_demo(session, days=8, calls_per_day=20)
    site = session.scalar(select(Site))
    rule = session.scalar(select(RoutingRule).where(RoutingRule.name == "Everyone else"))
    managers = {m.id: m for m in session.scalars(select(Manager))}
    weekdays = set()
    calls = session.scalars(select(Call)).all()
    assert calls
    for call in calls:
        local = call.started_at.astimezone(ZoneInfo(site.timezone))
        weekdays.add(local.weekday())
        assert is_open(rule.schedule, call.started_at, site.timezone), local
        manager = managers[call.routed_manager_id]
        assert is_open(manager.schedule, call.started_at, site.timezone), (manager.name, local)
    assert weekdays == set(range(7))  # Sunday too
    sunday_noon = dt.datetime(2026, 11, 22, 12, 0, tzinfo=ZoneInfo(site.timezone))
    assert is_open(rule.schedule, sunday_noon, site.timezone)


def test_db_upgrade_command_migrates_an_empty_database(runner, tmp_path, empty_url):
    config = _config_for(tmp_path, empty_url)
    result = runner.invoke(main, ["-c", config, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    with make_session_factory(make_engine(empty_url))() as session:
        assert session.scalar(select(func.count(Site.id))) == 0


def test_run_starts_the_children_and_stops_them_on_sigterm(tmp_path):
    """`astertrack run` is a supervisor: it starts every child and stops them all on SIGTERM."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    marker = tmp_path / "started"
    fake = bindir / "fake-child"
    fake.write_text(f"#!{sys.executable}\nimport sys, time\nopen({str(marker)!r}, 'a').write(sys.argv[1] + '\\n')\n"
                    "print('child ' + sys.argv[1] + ' up', flush=True)\ntime.sleep(60)\n")
    fake.chmod(0o755)
    code = (
        "import sys; from astertrack.ops.supervise import Child, supervise\n"
        f"sys.exit(supervise([Child('a', [{str(fake)!r}, 'a']), Child('b', [{str(fake)!r}, 'b'])]))\n"
    )
    proc = spawn([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not marker.exists() or len(marker.read_text().split()) < 2):
            time.sleep(0.1)
        assert sorted(marker.read_text().split()) == ["a", "b"]
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        stop_process(proc, 10)
    assert proc.returncode == 0
    assert "[a] child a up" in out and "[b] child b up" in out
    assert subprocess.run(["pgrep", "-f", str(fake)], capture_output=True).returncode == 1  # no orphans left


def _site_with_pool(db_url):
    from astertrack.db.models import NumberPool

    with make_session_factory(make_engine(db_url))() as session:
        site = Site(name="Shop")
        session.add(site)
        session.flush()
        session.add_all([NumberPool(site_id=site.id, name="Main"),
                         Source(site_id=site.id, name="Billboard", kind="static")])
        session.commit()


def test_numbers_import_previews_then_imports_and_reports_row_errors(runner, tmp_path, db_url):
    _site_with_pool(db_url)
    config = _config_for(tmp_path, db_url)
    good = tmp_path / "good.csv"
    good.write_text("number;pool;source;label\n8 (495) 123-45-67;Main;;pool 1\n+7 495 765-43-21;;Billboard;board\n",
                    encoding="utf-8")
    dry = runner.invoke(main, ["-c", config, "numbers", "import", str(good), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "create +74951234567" in dry.output and "nothing changed" in dry.output
    with make_session_factory(make_engine(db_url))() as session:
        assert session.scalar(select(func.count(TrackingNumber.id))) == 0
    done = runner.invoke(main, ["-c", config, "numbers", "import", str(good)])
    assert done.exit_code == 0, done.output
    assert "2 created" in done.output
    with make_session_factory(make_engine(db_url))() as session:
        numbers = {n.number: n for n in session.scalars(select(TrackingNumber))}
        assert numbers["+74951234567"].pool_id is not None and numbers["+74957654321"].source_id is not None

    bad = tmp_path / "bad.csv"
    bad.write_text("number,pool\nnot-a-number,Main\n+74951112233,Nope\n", encoding="utf-8")
    result = runner.invoke(main, ["-c", config, "numbers", "import", str(bad)])
    assert result.exit_code != 0
    assert "line 2: ERROR" in result.output and "line 3: ERROR" in result.output and "Nope" in result.output
    with make_session_factory(make_engine(db_url))() as session:
        assert session.scalar(select(func.count(TrackingNumber.id))) == 2  # nothing half-imported

    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    result = runner.invoke(main, ["-c", config, "numbers", "import", str(empty)])
    assert result.exit_code != 0 and "empty" in result.output and "Traceback" not in result.output
