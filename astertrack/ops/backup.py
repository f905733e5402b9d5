"""``astertrack backup`` / ``restore``: the database and the configuration in one archive.

An archive is a ``.tar.gz`` (mode 0600: it holds the secrets) with

* ``manifest.json`` — format version, time, node, database backend, schema revision,
  and the recordings directory (recordings are *not* in the archive: back that directory up
  by path, e.g. ``rsync -a /var/spool/asterisk/monitor/ backup-host:...``);
* ``database.sqlite3`` — SQLite's online backup API, consistent while the daemons write; or
  ``database.pgdump`` — ``pg_dump --format=custom`` (needs the PostgreSQL client tools);
* ``config/astertrack.conf`` and ``config/conf.d/*.conf``.

Restore puts the database back (SQLite through the same backup API, so the file is never
half-written; PostgreSQL with ``pg_restore --clean``) and, only when asked, the config files:
only ``astertrack.conf`` and ``conf.d/NAME.conf`` inside the chosen directory, checked before
anything is restored, whatever the manifest says.
Stop the astertrack services first: the restored data replaces what they are writing.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from astertrack.db.engine import normalise_url

FORMAT = 1
PG_VERSIONED_BIN = Path("/usr/lib/postgresql")  # Debian keeps each major version's tools here


class BackupError(RuntimeError):
    """A backup or restore cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Manifest:
    format: int
    created_at: str
    node: str
    backend: str  # sqlite | postgresql
    revision: str | None
    recordings_dir: str
    config_files: list[str]

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise BackupError(f"archive format {data.get('format')!r} is not supported (expected {FORMAT})")
        return cls(**{key: data.get(key) for key in cls.__dataclass_fields__})


def backend_of(url: str) -> str:
    name = make_url(normalise_url(url)).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"backups support SQLite and PostgreSQL, not {name}")
    return name


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError(f"{url}: an in-memory SQLite database cannot be backed up")
    return Path(database)


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as a libpq URI for pg_dump/pg_restore (no +driver)."""
    parsed = make_url(normalise_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        for candidate in sorted(PG_VERSIONED_BIN.glob(f"*/bin/{name}"), reverse=True):
            return str(candidate)
        raise BackupError(f"{name} not found: install the PostgreSQL client tools (Debian/Ubuntu: "
                          "apt-get install postgresql-client, a version at least as new as the server)")
    return found


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: " + ("; ".join(detail[-5:]) or f"exit code {result.returncode}"))


def _current_revision(url: str) -> str | None:
    from astertrack.db.engine import make_engine
    from astertrack.db.migrate import current_revision

    engine = make_engine(url)
    try:
        return current_revision(engine)
    except Exception:  # noqa: BLE001 - a database made by create_all has no version table
        return None
    finally:
        engine.dispose()


def _config_files(config) -> list[Path]:
    main = Path(config.path) if config.path else None
    files = []
    if main and main.is_file():
        files.append(main)
        files.extend(sorted((main.parent / "conf.d").glob("*.conf")))
    return files


def default_archive_name(node: str, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in node) or "node"
    return f"astertrack-backup-{safe}-{stamp}.tar.gz"


def create_backup(config, output: str | Path, include_config: bool = True) -> tuple[Path, Manifest]:
    """Write an archive; ``output`` may be a directory (a dated name is chosen) or a file name."""
    url = config.values["database"]["url"]
    backend = backend_of(url)
    output = Path(output)
    target = output / default_archive_name(config.values["general"]["node"]) if output.is_dir() else output
    target.parent.mkdir(parents=True, exist_ok=True)
    files = _config_files(config) if include_config else []
    manifest = Manifest(format=FORMAT, created_at=dt.datetime.now(dt.UTC).isoformat(),
                        node=config.values["general"]["node"], backend=backend, revision=_current_revision(url),
                        recordings_dir=config.values["recordings"]["dir"],
                        config_files=["astertrack.conf" if i == 0 else f"conf.d/{f.name}" for i, f in enumerate(files)])
    with tempfile.TemporaryDirectory(prefix="astertrack-backup-") as tmp:
        work = Path(tmp)
        if backend == "sqlite":
            source_path = sqlite_path(url)
            if not source_path.exists():
                raise BackupError(f"SQLite database {source_path} does not exist")
            dump = work / "database.sqlite3"
            source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
            copy = sqlite3.connect(dump)
            try:
                source.backup(copy)  # consistent snapshot, even while the daemons write (WAL)
            finally:
                copy.close()
                source.close()
        else:
            dump = work / "database.pgdump"
            _run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", "--file", str(dump),
                  "--dbname", libpq_url(url)], "pg_dump")
        partial = target.with_name(f".{target.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            body = json.dumps(manifest.__dict__, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mode, info.mtime = len(body), 0o600, int(dt.datetime.now().timestamp())
            tar.addfile(info, io.BytesIO(body))
            tar.add(dump, arcname=dump.name)
            for name, path in zip(manifest.config_files, files, strict=True):
                tar.add(path, arcname=f"config/{name}")
        os.replace(partial, target)
    return target, manifest


def read_manifest(archive: str | Path) -> Manifest:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError
            return Manifest.from_json(member.read())
    except (KeyError, tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive}: not an astertrack backup archive ({exc})") from None


# The only config names a backup writes (``create_backup``); restore refuses anything else, so a
# crafted manifest cannot name ``../x``, an absolute path, or a file in another directory.
CONFIG_NAME = re.compile(r"^(astertrack\.conf|conf\.d/[A-Za-z0-9][A-Za-z0-9_.-]*\.conf)$")


def _config_targets(names: list[str], dest: Path) -> list[tuple[str, Path]]:
    """Where each archived config file goes, all checked before anything is written: a name of
    the two shapes a backup makes, landing inside ``dest`` once symlinks are resolved."""
    if not isinstance(names, list):
        raise BackupError("the archive's manifest has no valid config_files list; refusing to restore config")
    root = dest.resolve()
    targets = []
    for name in names:
        if not isinstance(name, str) or not CONFIG_NAME.match(name):
            raise BackupError(f"refusing to restore config file {name!r}: an archive names only astertrack.conf "
                              "and conf.d/NAME.conf (the archive was altered or is not ours)")
        target = dest / name
        if not target.resolve().is_relative_to(root):
            raise BackupError(f"refusing to restore config file {name!r}: {target} leads outside {dest} "
                              "(a symlink there points elsewhere)")
        targets.append((name, target))
    return targets


def _extract(tar: tarfile.TarFile, name: str, dest: Path) -> Path:
    member = tar.getmember(name)
    if not member.isfile():
        raise BackupError(f"archive member {name} is not a regular file")
    source = tar.extractfile(member)
    out = dest / Path(name).name
    with source, out.open("wb") as handle:
        shutil.copyfileobj(source, handle)
    return out


def restore_backup(config, archive: str | Path, restore_config_to: str | Path | None = None,
                   overwrite_config: bool = False) -> Manifest:
    """Put the archived database into the configured one (and optionally the config files)."""
    manifest = read_manifest(archive)
    url = config.values["database"]["url"]
    backend = backend_of(url)
    if manifest.backend != backend:
        raise BackupError(f"the archive holds a {manifest.backend} database but the configured database is "
                          f"{backend}; point [database] url at a {manifest.backend} database or convert by hand")
    config_targets = []
    if restore_config_to is not None:  # every check before the database is touched
        config_targets = _config_targets(manifest.config_files, Path(restore_config_to))
        for _name, target in config_targets:
            if target.exists() and not overwrite_config:
                raise BackupError(f"{target} exists; restore the config into an empty directory or pass "
                                  "--overwrite-config")
    with tempfile.TemporaryDirectory(prefix="astertrack-restore-") as tmp, tarfile.open(archive, "r:gz") as tar:
        work = Path(tmp)
        if backend == "sqlite":
            dump = _extract(tar, "database.sqlite3", work)
            check = sqlite3.connect(dump)
            try:
                if check.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    raise BackupError("the archived SQLite database fails its integrity check; nothing restored")
            finally:
                check.close()
            target = sqlite_path(url)
            target.parent.mkdir(parents=True, exist_ok=True)
            source, live = sqlite3.connect(dump), sqlite3.connect(target, timeout=30)
            try:
                source.backup(live)  # replaces the live file's content in one step
            finally:
                live.close()
                source.close()
        else:
            dump = _extract(tar, "database.pgdump", work)
            _run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
                  "--single-transaction", "--exit-on-error", "--dbname", libpq_url(url), str(dump)], "pg_restore")
        for name, target in config_targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted = _extract(tar, f"config/{name}", work)
            shutil.copyfile(extracted, target)
            os.chmod(target, 0o640)
    return manifest
