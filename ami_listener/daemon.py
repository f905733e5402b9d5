"""``astertrack-ami``: run the AMI listener; ``rebuild --since DATE`` re-derives outcomes; ``forget-node NODE`` drops a decommissioned PBX's status.

Exit codes: 0 stopped by a signal; 2 Asterisk refused the login (wrong username/secret: retrying
would only hide the mistake, so systemd's start limit should stop us); 78 bad configuration.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import sys

import click
from sqlalchemy import select

from astertrack.config import ConfigError, load_config
from astertrack.db.engine import engine_from_config, make_session_factory
from astertrack.db.models import AmiListenerStatus
from astertrack.ops import metrics
from astertrack.ops.journal import setup_logging

from .connection import AmiAuthError
from .listener import AmiListener, state_machine_from_config
from .rebuild import rebuild

log = logging.getLogger("astertrack.ami")

EXIT_AUTH = 2
EXIT_CONFIG = 78


def _load(config_path: str | None):
    try:
        return load_config(config_path)
    except ConfigError as exc:
        click.echo(f"astertrack-ami: configuration error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)


@click.group(invoke_without_command=True)
@click.option("-c", "--config", "config_path", envvar="ASTERTRACK_CONFIG", default=None,
              help="configuration file (default /etc/astertrack/astertrack.conf)")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Listen to Asterisk's AMI and record every call's outcome (the default command: run)."""
    ctx.obj = config_path
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@main.command()
@click.pass_obj
def run(config_path: str | None) -> None:
    """Run the listener until SIGTERM/SIGINT."""
    config = _load(config_path)
    setup_logging(config.values["general"]["log_level"], "astertrack-ami", node=config.values["general"]["node"])
    if not config.values["ami"]["secret"]:
        click.echo("astertrack-ami: configuration error: [ami] secret is empty", err=True)
        sys.exit(EXIT_CONFIG)
    factory = make_session_factory(engine_from_config(config))
    listener = AmiListener(config, factory)
    port = config.values["ami"]["metrics_port"]
    server = None
    if port:
        try:
            server = metrics.start_http_server(
                "127.0.0.1", port, {"ami": metrics.ami_check(), "database": metrics.database_check(factory)},
                registry=metrics.daemon_registry("astertrack_ami_", "astertrack_calls_"))
        except OSError as exc:
            click.echo(f"astertrack-ami: cannot serve metrics on 127.0.0.1:{port} ([ami] metrics_port): {exc}",
                       err=True)
            sys.exit(EXIT_CONFIG)
    try:
        asyncio.run(_serve(listener))
    except AmiAuthError as exc:
        log.error("%s", exc)
        click.echo(f"astertrack-ami: {exc}", err=True)
        sys.exit(EXIT_AUTH)
    finally:
        if server is not None:
            server.shutdown()


async def _serve(listener: AmiListener) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, listener.stop)
    await listener.run()
    log.info("stopped: %d events applied, %d calls finished", listener.events_applied,
             listener.writer.calls_finished)


@main.command("rebuild")
@click.option("--since", "since", required=True, help="first call start to rebuild, ISO date or datetime (UTC)")
@click.pass_obj
def rebuild_command(config_path: str | None, since: str) -> None:
    """Re-derive outcomes of calls started since DATE from their stored raw events (idempotent)."""
    config = _load(config_path)
    logging.basicConfig(level=config.values["general"]["log_level"], stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        start = dt.datetime.fromisoformat(since)
    except ValueError:
        raise click.BadParameter(f"not an ISO date: {since!r}", param_hint="--since") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    factory = make_session_factory(engine_from_config(config))
    report = rebuild(factory, config.values["general"]["node"], start, lambda: state_machine_from_config(config),
                     region=config.values["general"]["default_region"])
    click.echo(f"calls {report.calls}, rebuilt {report.rebuilt}, changed {report.changed}, "
               f"not ended in events {report.incomplete}, without events {report.without_events}")


@main.command("forget-node")
@click.argument("node")
@click.pass_obj
def forget_node_command(config_path: str | None, node: str) -> None:
    """Forget a decommissioned PBX's listener status, so the admin stops warning about NODE.

    A listener that still runs writes its row again at its next tick: only a node whose listener
    is gone for good can be forgotten for long."""
    config = _load(config_path)
    engine = engine_from_config(config)
    try:
        with make_session_factory(engine)() as session:
            row = session.get(AmiListenerStatus, node)
            if row is None:
                known = ", ".join(session.scalars(select(AmiListenerStatus.node).order_by(AmiListenerStatus.node)))
                raise click.ClickException(f"no listener status for node {node!r} (known: {known or 'none'})")
            session.delete(row)
            session.commit()
    finally:
        engine.dispose()
    click.echo(f"forgot node {node!r}: the admin no longer shows its listener's status")


if __name__ == "__main__":
    main()
