"""``astertrack`` admin command line: init, db upgrade, users, number import, demo data, run, and the
operations commands (pool-health, retention, backup, restore)."""

from __future__ import annotations

import logging
import sys

import click

from astertrack.config import ConfigError, load_config
from astertrack.db.engine import engine_from_config, make_session_factory


class Context:
    """Lazily loaded config and database, shared by every command."""

    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._config = None
        self._factory = None

    @property
    def config(self):
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                raise click.ClickException(str(exc)) from None
        return self._config

    @property
    def session_factory(self):
        if self._factory is None:
            engine = engine_from_config(self.config)
            require_schema(engine)
            self._factory = make_session_factory(engine)
        return self._factory


def require_schema(engine) -> None:
    """A database without our schema, or with an older one, gets one line that says what to do
    instead of the traceback of the first query that misses a table."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)  # its import-time plugin notes are not this command's output
    try:
        from astertrack.db import migrate

        has_schema = inspect(engine).has_table("sites")
        revision = migrate.current_revision(engine) if has_schema else None
        head = migrate.head_revision() if revision is not None else None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(f"cannot open the database {engine.url.render_as_string()}: {reason}") from None
    finally:
        alembic_log.setLevel(level)
    if not has_schema:
        raise click.ClickException(f"the database {engine.url.render_as_string()} has no astertrack schema: "
                                   "run `astertrack db upgrade` first")
    if revision is not None and revision != head:
        raise click.ClickException(f"the database schema is at revision {revision}, this release needs {head}: "
                                   "run `astertrack db upgrade` first")


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.option("-c", "--config", "config_path", envvar="ASTERTRACK_CONFIG", default=None,
              help="configuration file (default /etc/astertrack/astertrack.conf)")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """astertrack: self-hosted call tracking for Asterisk."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = Context(config_path)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@pass_ctx
def db_upgrade(ctx: Context, revision: str) -> None:
    """Apply migrations (explicit; the daemons never migrate on start-up)."""
    from astertrack.db import migrate

    migrate.upgrade(ctx.config.values["database"]["url"], revision)
    click.echo(f"database at revision {revision}")


@main.command()
@click.option("--config-dir", default="/etc/astertrack", show_default=True, type=click.Path(file_okay=False))
@click.option("--database-url", default=None, help="default: SQLite under [general] data_dir")
@click.option("--data-dir", default=None, help="default /var/lib/astertrack")
@click.option("--recordings-dir", default=None, help="Asterisk's monitor dir")
@click.option("--admin-login", default="admin", show_default=True)
@click.option("--admin-password", default=None, envvar="ASTERTRACK_ADMIN_PASSWORD",
              help="asked for when not given and no user exists yet")
@click.option("--dev", is_flag=True, help="development defaults: cookies without the Secure flag")
@click.pass_context
def init(click_ctx: click.Context, config_dir: str, database_url: str | None, data_dir: str | None,
         recordings_dir: str | None, admin_login: str, admin_password: str | None, dev: bool) -> None:
    """Write the configuration (only if absent), create/upgrade the database, create the first admin."""
    import os
    import secrets
    from pathlib import Path

    from astertrack.config import Config, render_config
    from astertrack.db import migrate

    directory = Path(config_dir)
    main_file = directory / "astertrack.conf"
    secrets_file = directory / "conf.d" / "10-secrets.conf"
    (directory / "conf.d").mkdir(parents=True, exist_ok=True)
    if main_file.exists():
        click.echo(f"{main_file} exists: left as it is")
    else:
        settings = Config()
        data = data_dir or settings.values["general"]["data_dir"]
        settings.set("general", "data_dir", data)
        if recordings_dir:
            settings.set("recordings", "dir", recordings_dir)
        if dev:
            settings.set("web", "secure_cookies", "no")
        public = {section: {k: v for k, v in keys.items()} for section, keys in settings.values.items()}
        public.pop("database", None)
        for section in ("ami", "web"):
            public[section] = {k: v for k, v in public[section].items() if k not in ("secret", "secret_key")}
        main_file.write_text("# astertrack configuration. Drop-in overrides go in conf.d/*.conf;\n"
                             "# secrets live in conf.d/10-secrets.conf (mode 0640).\n\n"
                             + render_config(public), encoding="utf-8")
        click.echo(f"wrote {main_file}")
    if secrets_file.exists():
        click.echo(f"{secrets_file} exists: secrets kept")
    else:
        url = database_url or f"sqlite:///{Path(data_dir or '/var/lib/astertrack').resolve()}/astertrack.db"
        secret_text = render_config({"database": {"url": url},
                                     "ami": {"secret": secrets.token_urlsafe(24)},
                                     "web": {"secret_key": secrets.token_urlsafe(48)}})
        fd = os.open(secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret_text)
        click.echo(f"wrote {secrets_file} (0640)")
    ctx = Context(str(main_file))
    click_ctx.obj = ctx
    url = ctx.config.values["database"]["url"]
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(url)
    click.echo("database upgraded to the latest schema")
    from sqlalchemy import func, select

    from astertrack.db.models import User

    with ctx.session_factory() as session:
        if session.scalar(select(func.count(User.id))):
            return
    if admin_password is None:
        admin_password = click.prompt(f"password for the first admin '{admin_login}'", hide_input=True,
                                      confirmation_prompt=True)
    click_ctx.invoke(user_add, login=admin_login, role="admin", password=admin_password, manager_endpoint=None)


@main.group()
def user() -> None:
    """Admin users."""


@user.command("add")
@click.argument("login")
@click.option("--role", type=click.Choice(["admin", "supervisor", "manager"]), default="manager", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              envvar="ASTERTRACK_NEW_USER_PASSWORD")
@click.option("--manager-endpoint", default=None, help="link a manager user to its phone, e.g. PJSIP/101")
@pass_ctx
def user_add(ctx: Context, login: str, role: str, password: str, manager_endpoint: str | None) -> None:
    """Create a user who can log in to the web admin."""
    from sqlalchemy import select

    from astertrack.db.models import Manager, User
    from astertrack.passwords import hash_password

    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    with ctx.session_factory() as session:
        if session.scalar(select(User.id).where(User.login == login)):
            raise click.ClickException(f"user {login!r} already exists")
        manager_id = None
        if manager_endpoint:
            manager_id = session.scalar(select(Manager.id).where(Manager.endpoint == manager_endpoint))
            if manager_id is None:
                raise click.ClickException(f"no manager with endpoint {manager_endpoint!r}")
        elif role == "manager":
            raise click.ClickException("a manager user needs --manager-endpoint")
        session.add(User(login=login, password_hash=password_hash, role=role, manager_id=manager_id))
        session.commit()
    click.echo(f"user {login} ({role}) created")


@main.group()
def numbers() -> None:
    """Tracking numbers."""


@numbers.command("import")
@click.argument("csv_file", type=click.File("r", encoding="utf-8-sig"))
@click.option("--dry-run", is_flag=True, help="show what would change and every row error, change nothing")
@pass_ctx
def numbers_import(ctx: Context, csv_file, dry_run: bool) -> None:
    """Import tracking numbers from CSV (columns: number, site, pool or source, label, enabled)."""
    from astertrack.reporting.csv_import import CsvImportError, apply_numbers, parse_numbers_csv

    text = csv_file.read()
    region = ctx.config.values["general"]["default_region"]
    with ctx.session_factory() as session:
        try:
            rows, errors = parse_numbers_csv(text, session, region=region)
        except CsvImportError as exc:
            raise click.ClickException(str(exc)) from None
        for row in rows:
            target = row.pool_name and f"pool {row.pool_name}" or row.source_name and f"source {row.source_name}" or "-"
            click.echo(f"  line {row.line}: {row.action} {row.number} ({row.site_name}, {target})")
        for error in errors:
            click.echo(f"  line {error.line}: ERROR {error.message}", err=True)
        click.echo(f"{len(rows)} valid rows, {len(errors)} rows with errors")
        if errors:
            raise click.ClickException("nothing imported: fix the rows above (or remove them) and run again")
        if dry_run:
            click.echo("dry run: nothing changed")
            return
        counts = apply_numbers(session, rows)
        session.commit()
    click.echo(f"imported: {counts['create']} created, {counts['update']} updated")


@main.command()
@click.option("--days", default=30, show_default=True)
@click.option("--calls-per-day", default=110, show_default=True)
@pass_ctx
def demo(ctx: Context, days: int, calls_per_day: int) -> None:
    """Load a realistic sample data set (only into an empty database).

    Answered calls get short generated recordings in the ``[recordings] dir`` when it exists and
    is writable (it is never created: it is Asterisk's); otherwise they are loaded as not recorded.
    """
    import os
    from pathlib import Path

    from astertrack.samples.demo import DEMO_ADMIN, demo_loaded, load_demo

    recordings: Path | None = Path(ctx.config.values["recordings"]["dir"])
    with ctx.session_factory() as session:
        if demo_loaded(session):
            click.echo("the database already has data: demo not loaded")
            return
        if not (recordings.is_dir() and os.access(recordings, os.W_OK | os.X_OK)):
            click.echo(f"no writable recordings directory at {recordings}: demo calls are loaded without "
                       "recordings", err=True)
            recordings = None
        counts = load_demo(session, days=days, calls_per_day=calls_per_day, recordings_dir=recordings,
                           progress=lambda msg: click.echo(f"  {msg}", err=True))
    click.echo(f"demo loaded: {counts['calls']} calls, {counts['sessions']} sessions, "
               f"{counts['leads']} leads, {counts['deals']} deals")
    if recordings is not None:
        click.echo(f"{counts['recordings']} short generated recordings in {recordings}")
    if DEMO_ADMIN[0] in counts["created_logins"]:
        click.echo(f"log in as {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}")
    else:
        click.echo(f"log in as {DEMO_ADMIN[0]} with the password given to `astertrack init`")
    others = [login for login in counts["created_logins"] if login != DEMO_ADMIN[0]]
    if others:
        click.echo(f"other demo users ({', '.join(others)}): password is <login>-demo-password")


@main.command()
@click.option("--no-agi", is_flag=True, help="do not start the FastAGI server")
@click.option("--no-ami", is_flag=True, help="do not start the AMI listener")
@click.option("--web-threads", default=8, show_default=True,
              help="web admin threads for page requests (the live board and pop-ups hold none)")
@pass_ctx
def run(ctx: Context, no_agi: bool, no_ami: bool, web_threads: int) -> None:
    """Run web admin, tracker API, FastAGI server and AMI listener together in the foreground."""
    from astertrack.ops.supervise import Child, supervise

    config = ctx.config
    web, tracker = config.values["web"], config.values["tracker"]
    gunicorn = ["gunicorn", "--config", "python:astertrack.ops.gunicorn_conf", "--workers", "1"]
    children = [
        Child("web admin", [*gunicorn, "--threads", str(web_threads), "webadmin:create_app()"],
              env={"ASTERTRACK_GUNICORN_APP": "web"}, port=(web["listen_host"], web["listen_port"])),
        Child("tracker", [*gunicorn, "tracker:create_app()"], env={"ASTERTRACK_GUNICORN_APP": "tracker"},
              port=(tracker["listen_host"], tracker["listen_port"])),
    ]
    if not no_agi:
        agi = config.values["agi"]
        children.append(Child("FastAGI", ["astertrack-agi"], port=(agi["listen_host"], agi["listen_port"])))
    if not no_ami:
        children.append(Child("AMI listener", ["astertrack-ami"]))
    click.echo(f"web admin:  http://{web['listen_host']}:{web['listen_port']}/")
    click.echo(f"tracker:    http://{tracker['listen_host']}:{tracker['listen_port']}/")
    if not no_agi:
        click.echo(f"FastAGI:    agi://{agi['listen_host']}:{agi['listen_port']}/inbound")
    sys.exit(supervise(children, config_path=config.path))


@main.command()
@click.option("--dry-run", is_flag=True, help="report what would be freed, delete nothing")
@click.option("--site", "site_ids", type=int, multiple=True, help="only these site ids (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@pass_ctx
def retention(ctx: Context, dry_run: bool, site_ids: tuple[int, ...], as_json: bool) -> None:
    """Delete calls, sessions and recordings older than each site's retention (the daily timer runs this)."""
    import json

    from astertrack.ops.retention import human_bytes, sweep_from_config

    report = sweep_from_config(ctx.config, ctx.session_factory, dry_run=dry_run, site_ids=site_ids or None)
    if not dry_run and not site_ids:
        from astertrack.ops.retention import save_last_report

        try:
            save_last_report(ctx.config.values["general"]["data_dir"], report)
        except OSError as exc:
            click.echo(f"warning: could not save the report for the admin: {exc}", err=True)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for site in report.sites:
            click.echo(("would free " if dry_run else "") + site.summary())
            for error in site.errors:
                click.echo(f"  error: {error}", err=True)
        totals = report.totals
        click.echo(f"total: {totals['calls_deleted']} calls, {totals['sessions_deleted']} sessions, "
                   f"{totals['recordings_deleted']} recordings, {human_bytes(totals['bytes_freed'])}, "
                   f"{totals['raw_events_deleted']} raw events" + (" (dry run)" if dry_run else ""))
    if report.totals["errors"]:
        sys.exit(1)


@main.command()
@click.option("-o", "--output", default=".", show_default=True, type=click.Path(),
              help="directory (a dated file name is chosen) or archive file name")
@click.option("--no-config", is_flag=True, help="database only, without the config files (and their secrets)")
@pass_ctx
def backup(ctx: Context, output: str, no_config: bool) -> None:
    """Back up the database and config into one .tar.gz (recordings: back up their directory by path)."""
    from astertrack.ops.backup import BackupError, create_backup

    try:
        path, manifest = create_backup(ctx.config, output, include_config=not no_config)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {path} ({manifest.backend} database at revision {manifest.revision or 'unknown'}, "
               f"{len(manifest.config_files)} config files; mode 0600: it holds secrets)")
    click.echo(f"recordings are not in the archive: back up {manifest.recordings_dir} by path")


@main.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--config-to", type=click.Path(file_okay=False), default=None,
              help="also restore the config files into this directory (e.g. /etc/astertrack)")
@click.option("--overwrite-config", is_flag=True, help="replace config files that already exist there")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@pass_ctx
def restore(ctx: Context, archive: str, config_to: str | None, overwrite_config: bool, yes: bool) -> None:
    """Replace the configured database with the one in a backup archive (stop the services first)."""
    from astertrack.ops.backup import BackupError, read_manifest, restore_backup

    try:
        manifest = read_manifest(archive)
        click.echo(f"archive: {manifest.backend} database from node {manifest.node}, {manifest.created_at}, "
                   f"revision {manifest.revision or 'unknown'}")
        if not yes:
            click.confirm("This replaces every row in the configured database. Continue?", abort=True)
        restore_backup(ctx.config, archive, restore_config_to=config_to, overwrite_config=overwrite_config)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("database restored; run `astertrack db upgrade` if this release is newer than the backup, "
               "then start the services")


@main.command("pool-health")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 366), help="window to measure")
@click.option("--site", "site_id", type=int, default=None, help="only this site id")
@click.option("--pool", "pool_id", type=int, default=None, help="only this pool id")
@click.option("--margin", default=0.25, show_default=True, type=click.FloatRange(0, 5),
              help="head-room added to the measured 95th-percentile concurrency")
@click.option("--json", "as_json", is_flag=True, help="print JSON (with hourly series and samples)")
@click.option("--sample", is_flag=True, help="first write a usage sample per pool (for cron)")
@pass_ctx
def pool_health(ctx: Context, days: int, site_id: int | None, pool_id: int | None, margin: float,
                as_json: bool, sample: bool) -> None:
    """Number pools: utilisation, peak and p95 concurrency, overflows, recommended size."""
    import datetime as dt
    import json

    from astertrack.db.engine import session_scope
    from astertrack.db.types import utcnow
    from astertrack.dni import poolhealth

    now = utcnow()
    if sample:
        with session_scope(ctx.session_factory) as db:
            written = poolhealth.sample_pools(db, now, ctx.config.values["tracker"]["sample_seconds"])
        click.echo(f"wrote {written} usage sample(s)", err=True)
    with session_scope(ctx.session_factory) as db:
        reports = poolhealth.all_pools_health(db, now - dt.timedelta(days=days), now, now,
                                              site_id=site_id, pool_id=pool_id, margin=margin)
    if as_json:
        click.echo(json.dumps([report.as_dict() for report in reports], indent=2))
    else:
        click.echo(poolhealth.render_table(reports))


@main.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10000), help="calls per batch")
@click.option("--loop", is_flag=True, help="keep running: one batch every --interval seconds (for the service)")
@click.option("--interval", default=60, show_default=True, type=click.FloatRange(0.1), help="seconds between batches")
@click.option("--workers", type=click.IntRange(1, 64), help="recordings at once (default [transcription] workers)")
@pass_ctx
def transcribe(ctx: Context, limit: int, loop: bool, interval: float, workers: int | None) -> None:
    """Transcribe kept recordings of answered calls, tag them from the dictionaries, index them for search.

    Each site's engine (the admin's speech page, else [transcription] engine: the bundled pocketsphinx);
    a legacy [transcription] command, when set, runs that command line instead.
    """
    import signal
    import threading

    config = ctx.config
    legacy = bool(config.values["transcription"]["command"])
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if loop else None
    try:
        while True:
            try:
                counts = _transcribe_batch(ctx, limit, workers, legacy)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            except Exception as exc:  # a database hiccup must not kill the service; one-shot runs report it
                if not loop:
                    raise
                logging.getLogger("astertrack.speech").error("batch failed: %s", exc)
                if stop.wait(interval):
                    break
                continue
            for engine, problem in (counts.pop("unavailable", None) or {}).items():
                click.echo(f"error: {engine}: {problem}", err=True)
            click.echo(" ".join(f"{key}={value}" for key, value in counts.items()))
            if counts.get("engine_missing") and not loop:
                sys.exit(1)
            if not loop or stop.wait(interval):
                break
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _transcribe_batch(ctx: Context, limit: int, workers: int | None, legacy: bool) -> dict:
    if legacy:
        from astertrack.speech.transcription import run_batch

        return run_batch(ctx.session_factory, ctx.config, limit=limit)
    from astertrack.speech import worker

    def progress(done: int, total: int, outcome) -> None:
        detail = f" ({outcome.audio_seconds:.1f} s of audio)" if outcome.audio_seconds else \
            f": {outcome.detail or outcome.unavailable}" if (outcome.detail or outcome.unavailable) else ""
        click.echo(f"[{done}/{total}] call {outcome.call_id}: {outcome.status}{detail}", err=True)

    return worker.run_batch(ctx.session_factory, ctx.config, limit=limit, progress=progress, workers=workers)


@main.group()
def speech() -> None:
    """Speech analytics: each site's engine and model, transcript search."""


@speech.command("engines")
@pass_ctx
def speech_engines(ctx: Context) -> None:
    """Each site's engine and model, and whether it is ready (exit 1 when one is not)."""
    from sqlalchemy import select

    from astertrack.db.engine import session_scope
    from astertrack.db.models import Site
    from astertrack.speech import worker

    broken = False
    with session_scope(ctx.session_factory) as db:
        sites = db.scalars(select(Site).order_by(Site.id)).all()
        rows = [(None, "(default)", worker.engine_for_site(db, None, ctx.config))]
        rows += [(site.id, site.name, worker.engine_for_site(db, site.id, ctx.config)) for site in sites]
    for site_id, name, spec in rows:
        problem = worker.check_engine(spec)
        broken = broken or bool(problem)
        click.echo(f"{site_id or '-'}\t{name}\t{spec.describe()}\t{problem or 'ready'}")
    if broken:
        sys.exit(1)


@speech.command("search")
@click.argument("query")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@pass_ctx
def speech_search(ctx: Context, query: str, limit: int) -> None:
    """Calls whose transcript says QUERY (any word form): call id, second, the words around it."""
    from astertrack.db.engine import session_scope
    from astertrack.speech import search

    with session_scope(ctx.session_factory) as db:
        hits = search.search(db, query, limit=limit)
    for hit in hits:
        click.echo(f"{hit.call_id}\t{hit.at:.1f}\t{hit.snippet}")


@main.group()
def webhooks() -> None:
    """Webhook delivery to CRMs (outbox worker)."""


_MAX_ATTEMPTS_HELP = "attempts before a delivery is given up (default: [webhooks] max_attempts, 8)"


def _webhook_retry(ctx: Context, max_attempts: int | None):
    from astertrack.integrations.webhooks import Retry

    retry = Retry.from_config(ctx.config)
    return retry if max_attempts is None else Retry(max_attempts, retry.base_seconds, retry.max_seconds)


@webhooks.command("once")
@click.option("--max-attempts", default=None, type=click.IntRange(1, 100), help=_MAX_ATTEMPTS_HELP)
@pass_ctx
def webhooks_once(ctx: Context, max_attempts: int | None) -> None:
    """One pass: queue new calls, leads and deals, deliver what is due; prints the counts as JSON."""
    import json

    from astertrack.db.types import utcnow
    from astertrack.integrations.webhooks import run_once

    retry = _webhook_retry(ctx, max_attempts)
    click.echo(json.dumps(run_once(ctx.session_factory, utcnow(), retry=retry)))


@webhooks.command("run")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="seconds between passes when there is nothing more to deliver")
@click.option("--max-attempts", default=None, type=click.IntRange(1, 100), help=_MAX_ATTEMPTS_HELP)
@pass_ctx
def webhooks_run(ctx: Context, interval: float, max_attempts: int | None) -> None:
    """Run the delivery worker until SIGTERM/SIGINT (the systemd unit runs this)."""
    import signal
    import threading

    from astertrack.db.types import utcnow
    from astertrack.integrations.webhooks import run_once

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    retry = _webhook_retry(ctx, max_attempts)
    factory = ctx.session_factory
    click.echo(f"webhook worker started (interval {interval:g} s, {retry.max_attempts} attempts, "
               f"retry after {retry.base_seconds:g} s doubling up to {retry.max_seconds:g} s)", err=True)
    while not stop.is_set():
        try:
            counts = run_once(factory, utcnow(), retry=retry)
        except Exception as exc:  # a database hiccup must not kill the worker
            logging.getLogger("astertrack.integrations.webhooks").error("pass failed: %s", exc)
            stop.wait(interval)
            continue
        if counts["enqueued"] or counts["claimed"]:
            click.echo(" ".join(f"{key}={value}" for key, value in counts.items()))
        if not counts["claimed"]:
            stop.wait(interval)
    click.echo("webhook worker stopped", err=True)


@webhooks.command("add")
@click.argument("url")
@click.option("--event", "events", multiple=True, required=True,
              help="call.ringing, call.answered, call.finished, call.missed, lead.created, lead.updated, "
                   "deal.updated, chat.started, chat.message or chat.closed (integrations/events.py; an unknown "
                   "one is refused); repeat for several")
@pass_ctx
def webhooks_add(ctx: Context, url: str, events: tuple[str, ...]) -> None:
    """Subscribe URL to events; prints the signing secret, the only time it is shown."""
    from astertrack.db.engine import begin_write, session_scope
    from astertrack.integrations import subscriptions

    with session_scope(ctx.session_factory) as session:
        begin_write(session)
        try:
            row, secret = subscriptions.create(session, url, events)
        except subscriptions.SubscriptionError as exc:
            raise click.ClickException(str(exc)) from exc
        subscription_id, chosen = row.id, ", ".join(row.events)
    click.echo(f"subscription {subscription_id}: {url.strip()} ({chosen})")
    click.echo(f"secret (shown only now; verify X-Astertrack-Signature-V2 with it): {secret}")


@webhooks.command("list")
@pass_ctx
def webhooks_list(ctx: Context) -> None:
    """Subscriptions with their state and last delivery (never their secrets)."""
    from astertrack.db.engine import session_scope
    from astertrack.integrations import subscriptions

    with session_scope(ctx.session_factory) as session:
        rows = subscriptions.listing(session)
    for row in rows:
        last = f"{row.last_delivery}{f' HTTP {row.last_code}' if row.last_code else ''}" if row.last_delivery else "-"
        click.echo(f"{row.id}\t{row.state}\t{','.join(row.events)}\t{row.url}\tlast: {last}")
    if not rows:
        click.echo("no subscriptions", err=True)


def _set_webhook_enabled(ctx: Context, subscription_id: int, enabled: bool) -> None:
    from astertrack.db.engine import begin_write, session_scope
    from astertrack.db.models import WebhookSubscription
    from astertrack.integrations import subscriptions

    with session_scope(ctx.session_factory) as session:
        begin_write(session)
        row = session.get(WebhookSubscription, subscription_id)
        if row is None:
            raise click.ClickException(f"no subscription {subscription_id}")
        if row.archived_at is not None:
            raise click.ClickException(f"subscription {subscription_id} is archived")
        changed = subscriptions.set_enabled(row, enabled)
    state = "resumed" if enabled else "paused"
    click.echo(f"subscription {subscription_id} {state}" if changed else f"subscription {subscription_id} already {state}")


@webhooks.command("pause")
@click.argument("subscription_id", type=int)
@pass_ctx
def webhooks_pause(ctx: Context, subscription_id: int) -> None:
    """Stop delivering to a subscription (its queue waits)."""
    _set_webhook_enabled(ctx, subscription_id, False)


@webhooks.command("resume")
@click.argument("subscription_id", type=int)
@pass_ctx
def webhooks_resume(ctx: Context, subscription_id: int) -> None:
    """Deliver to a paused subscription again, its waiting queue included."""
    _set_webhook_enabled(ctx, subscription_id, True)


@webhooks.command("resend")
@click.argument("delivery_id", type=int)
@pass_ctx
def webhooks_resend(ctx: Context, delivery_id: int) -> None:
    """Make one delivery (an outbox row) due now again, even a delivered or dead one."""
    from astertrack.db.engine import begin_write, session_scope
    from astertrack.db.models import WebhookOutbox
    from astertrack.db.types import utcnow
    from astertrack.integrations import subscriptions

    with session_scope(ctx.session_factory) as session:
        begin_write(session)
        row = session.get(WebhookOutbox, delivery_id)
        if row is None:
            raise click.ClickException(f"no delivery {delivery_id}")
        try:
            subscriptions.resend(session, row, utcnow())
        except subscriptions.SubscriptionError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"delivery {delivery_id} is due now; the worker sends it on its next pass")

from astertrack.cli.conversions import conversions as conversions_group  # noqa: E402

main.add_command(conversions_group)
from astertrack.cli.simulate import simulate as simulate_command  # noqa: E402, I001

main.add_command(simulate_command)
