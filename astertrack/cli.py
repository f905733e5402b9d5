"""``astertrack`` admin command line: init, db upgrade, users, number import, demo data, run."""

from __future__ import annotations

import logging
import sys

import click

from astertrack.config import ConfigError, load_config
from astertrack.db import engine_from_config, make_session_factory


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
            self._factory = make_session_factory(engine_from_config(self.config))
        return self._factory


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
    from astertrack import migrate

    migrate.upgrade(ctx.config.values["database"]["url"], revision)
    click.echo(f"database at revision {revision}")
