"""astertrack backup / restore through the real CLI, on SQLite and on a private PostgreSQL database."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from astertrack.cli.main import main
from astertrack.db import migrate
from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import Base, Call, Site
from tests.conftest import scratch_pg_database


def build_schema(url):
    """Current models plus a stamped revision (the lead regenerates the migration at the end)."""
    from alembic import command

    engine = make_engine(url)
    Base.metadata.create_all(engine)
    engine.dispose()
    command.stamp(migrate.alembic_config(url), "head")


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(request, tmp_path):
    """A database built by the real migrations (backups carry the schema revision)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'live.db'}"
        build_schema(url)
        yield url
        return
    admin_url = request.getfixturevalue("pg_admin_url")
    if admin_url is None:
        pytest.skip("no PostgreSQL available")
    with scratch_pg_database(admin_url, "astertrack_backup") as url:
        build_schema(url)
        yield url


def write_config(directory, url, recordings):
    (directory / "conf.d").mkdir(parents=True)
    (directory / "astertrack.conf").write_text(f"[general]\nnode = pbx-b\n\n[recordings]\ndir = {recordings}\n")
    secrets = directory / "conf.d" / "10-secrets.conf"
    secrets.write_text(f"[database]\nurl = {url}\n\n[web]\nsecret_key = s3cret-key-value\n")
    secrets.chmod(0o640)
    return directory / "astertrack.conf"


def counts(url):
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return (session.scalar(select(func.count()).select_from(Site)),
                    session.scalar(select(func.count()).select_from(Call)),
                    sorted(session.scalars(select(Site.name))))
    finally:
        engine.dispose()


def test_backup_then_restore_round_trip(migrated_url, tmp_path):
    conf = write_config(tmp_path / "etc", migrated_url, tmp_path / "monitor")
    engine = make_engine(migrated_url)
    with make_session_factory(engine)() as session:
        site = Site(name="before")
        session.add(site)
        session.flush()
        session.add_all([Call(site_id=site.id, did="+74950000101"), Call(site_id=site.id, did="+74950000102")])
        session.commit()
    engine.dispose()
    runner = CliRunner()
    out_dir = tmp_path / "backups"
    out_dir.mkdir()
    result = runner.invoke(main, ["-c", str(conf), "backup", "-o", str(out_dir)])
    assert result.exit_code == 0, result.output
    (archive,) = list(out_dir.iterdir())
    assert archive.name.startswith("astertrack-backup-pbx-b-") and archive.name.endswith(".tar.gz")
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    assert "back up" in result.output and str(tmp_path / "monitor") in result.output
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = json.load(tar.extractfile("manifest.json"))
    backend = "sqlite" if migrated_url.startswith("sqlite") else "postgresql"
    dump = "database.sqlite3" if backend == "sqlite" else "database.pgdump"
    assert names == {"manifest.json", dump, "config/astertrack.conf", "config/conf.d/10-secrets.conf"}
    assert manifest["backend"] == backend and manifest["node"] == "pbx-b"
    assert manifest["revision"] == migrate.head_revision()

    # Damage the live database, then restore.
    engine = make_engine(migrated_url)
    with make_session_factory(engine)() as session:
        session.query(Call).delete()
        session.add(Site(name="after"))
        session.commit()
    engine.dispose()
    assert counts(migrated_url)[1] == 0
    result = runner.invoke(main, ["-c", str(conf), "restore", str(archive)], input="y\n")
    assert result.exit_code == 0, result.output
    assert counts(migrated_url) == (1, 2, ["before"])

    # Config comes back only when asked, and never over existing files without --overwrite-config.
    target = tmp_path / "restored-etc"
    result = runner.invoke(main, ["-c", str(conf), "restore", "--yes", "--config-to", str(target), str(archive)])
    assert result.exit_code == 0, result.output
    assert (target / "conf.d/10-secrets.conf").read_text() == (tmp_path / "etc/conf.d/10-secrets.conf").read_text()
    assert oct((target / "conf.d/10-secrets.conf").stat().st_mode & 0o777) == "0o640"
    result = runner.invoke(main, ["-c", str(conf), "restore", "--yes", "--config-to", str(target), str(archive)])
    assert result.exit_code != 0 and "exists" in result.output


def test_restore_refuses_a_backend_mismatch_and_junk(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    build_schema(url)
    conf = write_config(tmp_path / "etc", url, tmp_path / "rec")
    runner = CliRunner()
    result = runner.invoke(main, ["-c", str(conf), "backup", "--no-config", "-o", str(tmp_path / "b.tar.gz")])
    assert result.exit_code == 0, result.output
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        assert "config/astertrack.conf" not in tar.getnames()
    other = write_config(tmp_path / "pg-etc", "postgresql://postgres@127.0.0.1:1/none", tmp_path / "rec")
    result = runner.invoke(main, ["-c", str(other), "restore", "--yes", str(tmp_path / "b.tar.gz")])
    assert result.exit_code != 0 and "holds a sqlite database but the configured database is postgresql" in result.output
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    result = runner.invoke(main, ["-c", str(conf), "restore", "--yes", str(junk)])
    assert result.exit_code != 0 and "not an astertrack backup archive" in result.output


def test_missing_pg_dump_is_a_clear_error(tmp_path, monkeypatch):
    conf = write_config(tmp_path / "etc", "postgresql://postgres@127.0.0.1:5432/test", tmp_path / "rec")
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_dump on PATH
    monkeypatch.setattr("astertrack.ops.backup.PG_VERSIONED_BIN", tmp_path / "no-postgresql")
    monkeypatch.setattr("astertrack.ops.backup._current_revision", lambda url: None)
    result = CliRunner().invoke(main, ["-c", str(conf), "backup", "-o", str(tmp_path)])
    assert result.exit_code != 0
    assert "pg_dump not found" in result.output and "postgresql-client" in result.output
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tar.gz")]


def _tampered_copy(archive, out, config_files, members):
    """The same archive with its manifest's config list (and config members) replaced."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src.getmembers():
            if member.name.startswith("config/"):
                continue
            data = src.extractfile(member).read()
            if member.name == "manifest.json":
                manifest = json.loads(data)
                manifest["config_files"] = config_files
                data = json.dumps(manifest).encode()
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture
def sqlite_backup(tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    build_schema(url)
    conf = write_config(tmp_path / "etc", url, tmp_path / "rec")
    result = CliRunner().invoke(main, ["-c", str(conf), "backup", "-o", str(tmp_path / "good.tar.gz")])
    assert result.exit_code == 0, result.output
    return conf, tmp_path / "good.tar.gz", url


@pytest.mark.parametrize("name", ["../evil.conf", "conf.d/../../evil.conf", "ABSOLUTE", "conf.d/sub/x.conf",
                                  "conf.d/.hidden.conf", "other.conf", "conf.d/x.txt", "conf.d\\..\\..\\evil.conf",
                                  "", "conf.d/"])
def test_restore_refuses_a_config_name_outside_the_target(sqlite_backup, tmp_path, name):
    conf, good, url = sqlite_backup
    outside = tmp_path / "outside"
    outside.mkdir()
    if name == "ABSOLUTE":
        name = str(outside / "evil.conf")
    bad = _tampered_copy(good, tmp_path / "bad.tar.gz", ["astertrack.conf", name],
                         {"config/astertrack.conf": b"[general]\n", f"config/{name}": b"[web]\nsecret_key = owned\n"})
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        session.add(Site(name="written after the backup"))
        session.commit()
    engine.dispose()
    target = tmp_path / "restored"
    result = CliRunner().invoke(main, ["-c", str(conf), "restore", "--yes", "--config-to", str(target), str(bad)])
    assert result.exit_code != 0
    assert "refusing" in result.output and "config" in result.output
    assert not (tmp_path / "evil.conf").exists() and not (outside / "evil.conf").exists()
    assert not target.exists() or not any(target.rglob("*"))
    # refused before anything was touched: the database was not restored either
    assert "written after the backup" in counts(url)[2]


def test_restore_refuses_to_write_through_a_symlinked_conf_d(sqlite_backup, tmp_path):
    conf, good, _url = sqlite_backup
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = tmp_path / "restored"
    target.mkdir()
    (target / "conf.d").symlink_to(elsewhere)
    result = CliRunner().invoke(main, ["-c", str(conf), "restore", "--yes", "--config-to", str(target), str(good)])
    assert result.exit_code != 0 and "refusing" in result.output
    assert list(elsewhere.iterdir()) == []


def test_restore_of_an_honest_archive_still_writes_both_files(sqlite_backup, tmp_path):
    conf, good, _url = sqlite_backup
    target = tmp_path / "restored"
    result = CliRunner().invoke(main, ["-c", str(conf), "restore", "--yes", "--config-to", str(target), str(good)])
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*.conf")) == [
        "astertrack.conf", "conf.d/10-secrets.conf"]
