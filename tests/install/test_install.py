"""install.sh into a temporary root, with recording stand-ins for every system command."""

from __future__ import annotations

import configparser
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from tests.conftest import scratch_pg_database
from tests.install.conftest import FREEPBX_EXTENSIONS, FREEPBX_MANAGER, REPO

UNITS = ["astertrack-agi.service", "astertrack-ami.service", "astertrack-web.service",
         "astertrack-tracker.service", "astertrack-webhooks.service", "astertrack-retention.service",
         "astertrack-retention.timer", "astertrack-transcription.service", "astertrack-transcription.timer",
         "astertrack-conversions.service", "astertrack-conversions.timer", "astertrack.target"]
OUR_VARS = ["CT_CALL_ID", "CT_SOURCE", "CT_MANAGER", "CT_RECORDING"]


def ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(path)
    return parser


def channelvars_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.match(r"\s*channelvars\s*=", line)]


def test_plain_asterisk_install(fake_system, fake_ami):
    fake_system.with_asterisk_group()
    fake_system.plain_asterisk()
    result = fake_system.run()
    root = fake_system.root

    # Config: written once, secrets 0640 in conf.d, readable by the service group only.
    conf, secrets = root / "etc/astertrack/astertrack.conf", root / "etc/astertrack/conf.d/10-secrets.conf"
    assert oct(secrets.stat().st_mode & 0o777) == "0o640"
    assert oct((root / "etc/astertrack").stat().st_mode & 0o777) == "0o750"
    values = ini(secrets)
    assert values["database"]["url"] == "sqlite:////var/lib/astertrack/astertrack.db"
    assert len(values["ami"]["secret"]) >= 24 and len(values["web"]["secret_key"]) >= 48
    assert len(values["general"]["metrics_token"]) >= 32  # the admin's and the tracker's /metrics need it
    assert ini(conf)["general"]["node"] == "pbx-test"
    from astertrack.config import load_config  # the real loader accepts every key we wrote

    loaded = load_config(conf, environ={})
    assert loaded.values["ami"]["secret"] == values["ami"]["secret"]

    # Database migrated for real, inside the root.
    engine = create_engine(f"sqlite:///{root / 'var/lib/astertrack/astertrack.db'}")
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"calls", "sites", "astertrack_alembic_version"} <= tables

    # Units: restart policy, ordering, hardening, recordings read-only for the web admin.
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit).is_file(), unit
    for name in ("agi", "ami", "web", "tracker"):
        unit = (root / f"etc/systemd/system/astertrack-{name}.service").read_text()
        for line in ("Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict", "User=astertrack",
                     "StartLimitBurst=10", "StandardOutput=journal", f"SyslogIdentifier=astertrack-{name}",
                     "ReadWritePaths=/var/lib/astertrack /var/log/astertrack"):
            assert line in unit, (name, line)
        assert "After=network-online.target postgresql.service" in unit
        assert "/var/spool/asterisk/monitor" not in unit.split("ReadWritePaths=")[1]
    web = (root / "etc/systemd/system/astertrack-web.service").read_text()
    assert "ReadOnlyPaths=-/var/spool/asterisk/monitor" in web
    assert "gunicorn --config python:astertrack.ops.gunicorn_conf webadmin:create_app()" in web
    assert "asterisk.service" in (root / "etc/systemd/system/astertrack-ami.service").read_text()
    retention = (root / "etc/systemd/system/astertrack-retention.service").read_text()
    assert "ReadWritePaths=/var/lib/astertrack /var/log/astertrack -/var/spool/asterisk/monitor" in retention

    # Asterisk: one channelvars line, merged; one include; our user with the generated secret.
    manager = (fake_system.etc_asterisk / "manager.conf").read_text()
    lines = channelvars_lines(manager)
    assert len(lines) == 1
    assert lines[0] == "channelvars = FOO, CT_CALL_ID, CT_SOURCE, CT_MANAGER, CT_RECORDING ; used by the wallboard"
    assert "timestampevents = yes" in manager.split("[admin]")[0]
    assert manager.count("#include manager_astertrack.conf") == 1
    assert "secret = admin-secret" in manager  # the admin's own user untouched
    user_file = fake_system.etc_asterisk / "manager_astertrack.conf"
    assert oct(user_file.stat().st_mode & 0o777) == "0o640"
    users = ini(user_file)
    (username,) = users.sections()
    assert username == values["ami"].get("username", ini(conf)["ami"]["username"])
    assert users[username]["secret"] == values["ami"]["secret"]
    assert "127.0.0.1/255.255.255.255" in users[username]["permit"]
    if (REPO / "asterisk-conf/extensions_astertrack.conf").exists():
        assert (fake_system.etc_asterisk / "extensions_astertrack.conf").read_bytes() == \
            (REPO / "asterisk-conf/extensions_astertrack.conf").read_bytes()
        assert (fake_system.etc_asterisk / "extensions.conf").read_text().count(
            "#include extensions_astertrack.conf") == 1

    # The AMI login check really logged in with the configured credentials.
    assert fake_ami.logins == [(username, values["ami"]["secret"])]
    assert f"AMI login as '{username}'" in result.stdout and "works" in result.stdout

    commands = fake_system.commands()
    assert commands[0].startswith("useradd --system --user-group --home-dir /var/lib/astertrack")
    assert "usermod -a -G asterisk astertrack" in commands
    assert "astertrack db upgrade" in commands
    assert "asterisk -rx manager reload" in commands and "asterisk -rx dialplan reload" in commands
    assert "systemctl daemon-reload" in commands
    monitor = str(fake_system.monitor)
    assert f"setfacl -R -m u:astertrack:rwX -m d:u:astertrack:rwX {monitor}" in commands
    enable = next(c for c in commands if c.startswith("systemctl enable --now astertrack.target astertrack-agi.service"))
    assert "astertrack-webhooks.service" in enable and "astertrack-retention.timer" in enable
    # Transcription needs an engine the admin installs: its timer is installed but not enabled.
    assert "astertrack-transcription" not in enable
    assert "systemctl enable --now astertrack-transcription.timer" in result.stdout
    assert not any("try-restart" in c for c in commands)  # first install: nothing to restart
    todo = result.stdout.split("Things you must do")[1]
    assert "Goto(astertrack-inbound" in todo and "ASTERTRACK_DEFAULT_DIAL" in todo

    # Once the admin has done both, the reminders stop.
    with (fake_system.etc_asterisk / "extensions.conf").open("a") as handle:
        handle.write("[globals]\nASTERTRACK_DEFAULT_DIAL = SIP/101\n[trunk]\nexten => _X.,1,Goto(astertrack-inbound,${EXTEN},1)\n")
    again = fake_system.run()
    assert "Things you must do" not in again.stdout


def test_second_run_changes_nothing(fake_system, fake_ami):
    fake_system.with_asterisk_group()
    fake_system.plain_asterisk()
    fake_system.run()
    first_tree = fake_system.tree()
    first_commands = fake_system.commands()
    fake_system.reset_log()

    result = fake_system.run()
    assert fake_system.tree() == first_tree
    second = fake_system.commands()
    # Only the idempotent calls remain: no user creation, no Asterisk reload, no daemon-reload.
    expected = [c for c in first_commands
                if not c.startswith(("useradd", "usermod", "asterisk -rx", "systemctl daemon-reload", "setfacl"))]
    assert second == expected
    assert "Asterisk config unchanged: no reload" in result.stdout
    assert "exists: secrets kept" in result.stdout
    assert len(fake_ami.logins) == 2


def test_admin_edits_are_kept(fake_system):
    fake_system.plain_asterisk()
    fake_system.run()
    conf = fake_system.root / "etc/astertrack/astertrack.conf"
    secrets = fake_system.root / "etc/astertrack/conf.d/10-secrets.conf"
    edited = conf.read_text().replace("listen_port = 8080", "listen_port = 9090")
    conf.write_text(edited)
    secret_before = secrets.read_text()
    manager = fake_system.etc_asterisk / "manager.conf"
    manager.write_text(manager.read_text().replace("channelvars = FOO,", "channelvars = FOO, BAR,"))
    fake_system.run()
    assert conf.read_text() == edited
    assert secrets.read_text() == secret_before
    assert channelvars_lines(manager.read_text()) == [
        "channelvars = FOO, BAR, CT_CALL_ID, CT_SOURCE, CT_MANAGER, CT_RECORDING ; used by the wallboard"]


def test_channelvars_added_when_absent(fake_system):
    fake_system.etc_asterisk.mkdir(parents=True)
    (fake_system.etc_asterisk / "manager.conf").write_text("[general]\nenabled = yes\ntimestampevents = no\n\n"
                                                           "[other]\nsecret = s\n")
    (fake_system.etc_asterisk / "extensions.conf").write_text("[general]\n")
    result = fake_system.run()
    manager = (fake_system.etc_asterisk / "manager.conf").read_text()
    assert channelvars_lines(manager) == ["channelvars = " + ", ".join(OUR_VARS)]
    general = manager.split("[other]")[0]
    assert "channelvars" in general and "timestampevents = yes" in general and "timestampevents = no" not in general
    assert "timestampevents: no -> yes" in result.stdout


def test_freepbx_layout_uses_custom_files(fake_system, fake_ami):
    fake_system.freepbx_asterisk()
    result = fake_system.run()
    etc = fake_system.etc_asterisk
    assert "FreePBX-style layout detected" in result.stdout
    # FreePBX's generated files are never edited.
    assert (etc / "manager.conf").read_text() == FREEPBX_MANAGER
    assert (etc / "extensions.conf").read_text() == FREEPBX_EXTENSIONS
    custom = (etc / "manager_custom.conf").read_text()
    assert custom.startswith("; custom AMI users\n")
    assert custom.count("#include manager_astertrack.conf") == 1
    # [general](+) appends to FreePBX's [general]; the last channelvars wins, so it carries FOO too.
    assert "[general](+)" in custom
    assert channelvars_lines(custom) == ["channelvars = FOO, " + ", ".join(OUR_VARS)]
    assert "timestampevents = yes" in custom
    if (REPO / "asterisk-conf/extensions_astertrack.conf").exists():
        assert (etc / "extensions_custom.conf").read_text().count("#include extensions_astertrack.conf") == 1
    assert fake_ami.logins and "works" in result.stdout
    assert "astertrack-freepbx,s,1" in result.stdout and "globals_custom.conf" in result.stdout
    tree = fake_system.tree()
    fake_system.run()
    assert fake_system.tree() == tree


def test_generated_plain_manager_conf_is_not_edited(fake_system):
    """A manager.conf that says "do not edit" and has no custom hook: print the lines instead."""
    fake_system.etc_asterisk.mkdir(parents=True)
    original = "; Do not edit: generated by our provisioning\n[general]\nenabled = yes\n"
    # FreePBX-like by its header, but without manager_custom.conf: install.sh creates that file.
    (fake_system.etc_asterisk / "manager.conf").write_text(original)
    result = fake_system.run()
    assert (fake_system.etc_asterisk / "manager.conf").read_text() == original
    assert "#include manager_astertrack.conf" in result.stdout or \
        "#include manager_astertrack.conf" in (fake_system.etc_asterisk / "manager_custom.conf").read_text()


def test_unreadable_include_target_prints_the_line(fake_system):
    fake_system.etc_asterisk.mkdir(parents=True)
    (fake_system.etc_asterisk / "manager.conf").write_text("[general]\nenabled = yes\n")
    real = fake_system.tmp / "extensions-real.conf"
    real.write_text("[general]\n")
    (fake_system.etc_asterisk / "extensions.conf").symlink_to(real)
    if not (REPO / "asterisk-conf/extensions_astertrack.conf").exists():
        pytest.skip("no extensions_astertrack.conf in this checkout yet")
    result = fake_system.run()
    assert "Things you must do" in result.stdout
    assert "#include extensions_astertrack.conf" in result.stdout.split("Things you must do")[1]
    assert real.read_text() == "[general]\n"


def test_failed_ami_login_says_what_to_fix(fake_system, fake_ami):
    fake_system.plain_asterisk()
    fake_ami.users_file = None
    fake_ami.expected = ("astertrack", "some-other-secret")
    result = fake_system.run()
    assert result.returncode == 0
    tail = result.stdout.split("Things you must do")[1]
    assert "refused the AMI login of user 'astertrack'" in tail
    assert "conf.d/10-secrets.conf" in tail and "manager reload" in tail


def test_unreachable_ami_says_what_to_fix(fake_system, fake_ami):
    fake_system.plain_asterisk()
    fake_ami.close()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        fake_system.ami_port = probe.getsockname()[1]
    result = fake_system.run()
    assert "cannot connect to the Asterisk manager" in result.stdout
    assert "enabled = yes" in result.stdout.split("Things you must do")[1]


def test_uninstall_keeps_data_and_purge_removes_it(fake_system):
    fake_system.with_asterisk_group()
    fake_system.plain_asterisk()
    fake_system.run()
    root, etc = fake_system.root, fake_system.etc_asterisk
    fake_system.reset_log()

    fake_system.run("--uninstall")
    for unit in UNITS:
        assert not (root / "etc/systemd/system" / unit).exists()
    assert not (root / "opt/astertrack").exists()
    assert not (etc / "manager_astertrack.conf").exists()
    manager = (etc / "manager.conf").read_text()
    assert "manager_astertrack" not in manager and "astertrack:" not in manager
    assert channelvars_lines(manager) == ["channelvars = FOO ; used by the wallboard"]
    assert "secret = admin-secret" in manager
    # Data and config kept.
    assert (root / "var/lib/astertrack/astertrack.db").exists()
    assert (root / "etc/astertrack/conf.d/10-secrets.conf").exists()
    commands = fake_system.commands()
    assert any(c.startswith("systemctl disable --now astertrack-agi.service") for c in commands)
    assert "asterisk -rx manager reload" in commands and "userdel astertrack" not in commands
    assert f"setfacl -R -x u:astertrack -x d:u:astertrack {fake_system.monitor}" in commands

    fake_system.run("--uninstall", "--purge")
    assert not (root / "var/lib/astertrack").exists()
    assert not (root / "etc/astertrack").exists()
    assert "userdel astertrack" in fake_system.commands()
    leftovers = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert leftovers == ["etc/asterisk/extensions.conf", "etc/asterisk/manager.conf"]
    assert fake_system.monitor.is_dir()  # Asterisk's recordings directory is never removed


def test_postgres_install_runs_migrations(fake_system, pg_admin_url):
    if pg_admin_url is None:
        pytest.skip("no PostgreSQL available")
    with scratch_pg_database(pg_admin_url, "astertrack_install") as url:
        fake_system.plain_asterisk()
        fake_system.run("--postgres", url)
        assert ini(fake_system.root / "etc/astertrack/conf.d/10-secrets.conf")["database"]["url"] == url
        assert not (fake_system.root / "var/lib/astertrack/astertrack.db").exists()
        engine = create_engine(url)
        try:
            assert "calls" in inspect(engine).get_table_names()
        finally:
            engine.dispose()


def test_units_pass_systemd_analyze_verify(fake_system, tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine: unit files not verified")
    fake_system.plain_asterisk()
    fake_system.run()
    # verify insists that ExecStart binaries exist: point them at stubs inside the temp root.
    stub_dir = fake_system.root / "opt/astertrack/venv/bin"
    stub_dir.mkdir(parents=True)
    for name in ("astertrack", "astertrack-agi", "astertrack-ami", "gunicorn"):
        (stub_dir / name).write_text("#!/bin/sh\n")
        (stub_dir / name).chmod(0o755)
    check_dir = tmp_path / "verify"
    check_dir.mkdir()
    for unit in UNITS:
        body = (fake_system.root / "etc/systemd/system" / unit).read_text()
        (check_dir / unit).write_text(body.replace("/opt/astertrack/", f"{fake_system.root}/opt/astertrack/"))
    result = subprocess.run([analyze, "verify", "--man=no", *[str(check_dir / u) for u in UNITS]],
                            capture_output=True, text=True, cwd=check_dir)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if "astertrack" in line and "not found" not in line.lower()]
    assert result.returncode == 0 or not problems, result.stdout + result.stderr
    assert not problems, problems


def test_bad_options_fail_clearly(fake_system):
    result = fake_system.run("--purge", check=False)
    assert result.returncode != 0 and "--purge goes with --uninstall" in result.stderr
    result = fake_system.run("--frobnicate", check=False)
    assert result.returncode != 0 and "unknown option: --frobnicate" in result.stderr


def test_cdr_mapping_installed_once_kept_beside_the_admins_and_removed_on_uninstall(fake_system):
    """Asterisk's CDR line for the listener's reconciliation: a cdr_custom.conf of our own when there
    is none, our line added to the admin's [mappings] otherwise, nothing twice, gone on uninstall."""
    fake_system.plain_asterisk()
    etc, root = fake_system.etc_asterisk, fake_system.root
    result = fake_system.run()
    ours = (REPO / "asterisk-conf/cdr_custom_astertrack.conf").read_text()
    assert (etc / "cdr_custom.conf").read_text() == ours
    assert (root / "var/log/asterisk/cdr-custom").is_dir()  # cdr_custom never creates it
    assert "asterisk -rx module load cdr_custom.so" in fake_system.commands()
    assert "cdr_custom.so" not in " ".join(a for a in result.stdout.splitlines() if "ACTION" in a)

    fake_system.run("--uninstall")
    assert not (etc / "cdr_custom.conf").exists()

    admin = "[mappings]\nbilling.csv => ${CDR(src)},${CDR(billsec)}\n"
    (etc / "cdr_custom.conf").write_text(admin)
    (etc / "modules.conf").write_text("[modules]\nautoload = yes\nnoload => cdr_custom.so\n")
    result = fake_system.run()
    text = (etc / "cdr_custom.conf").read_text()
    assert text.startswith("[mappings]\n; astertrack:") and "billing.csv => ${CDR(src)},${CDR(billsec)}" in text
    assert sum(line.startswith("astertrack.csv =>") for line in text.splitlines()) == 1
    assert "noload => cdr_custom.so" in result.stdout  # the admin's modules.conf is theirs to change
    tree = fake_system.tree()
    fake_system.run()
    assert fake_system.tree() == tree

    fake_system.run("--uninstall")
    assert (etc / "cdr_custom.conf").read_text() == admin
