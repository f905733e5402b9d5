"""``astertrack conversions``: send calls and leads to GA4 and Yandex Metrica, write upload files
for Metrica and Google Ads, read the log.  The systemd timer runs ``send`` every 15 minutes; with
no site configured it does nothing."""

from __future__ import annotations

from typing import Any

import click

# The command line's shared Context (astertrack.cli.main), passed as the click object; not imported
# here so that main can register this group without an import cycle.
pass_ctx = click.pass_obj
Context = Any


@click.group()
def conversions() -> None:
    """Conversions to GA4, Yandex Metrica and Google Ads (docs/conversions.md)."""


@conversions.command("send")
@click.option("--site", "site_id", type=int, default=None, help="only this site (default: every configured one)")
@click.option("--platform", type=click.Choice(["ga4", "metrica", "google_ads"]), default=None,
              help="only this platform (google_ads takes upload files only: see `export`)")
@click.option("--dry-run", is_flag=True, help="count what would be sent and skipped; send and log nothing")
@pass_ctx
def conversions_send(ctx: Context, site_id: int | None, platform: str | None, dry_run: bool) -> None:
    """Send new conversions and retry the ones a network error stopped; prints the counts."""
    from astertrack.integrations.conversions import sender

    if platform == "google_ads":
        click.echo("google_ads takes upload files only: astertrack conversions export --platform google_ads "
                   "--site ID --out FILE")
        return
    counts = sender.run(ctx.session_factory, ctx.config, site_id=site_id, platform=platform, dry_run=dry_run,
                        echo=click.echo)
    for name in sender.SENT_PLATFORMS:
        if platform not in (None, name):
            continue
        reasons = ", ".join(f"{reason} {number}" for reason, number in sorted(counts.skipped.get(name, {}).items()))
        verb = "would send" if dry_run else "sent"
        click.echo(f"{name}: {verb} {counts.sent[name]}, skipped {counts.total_skipped(name)}"
                   f"{f' ({reasons})' if reasons else ''}, refused {counts.refused[name]}, "
                   f"failed {counts.failed[name]}")


@conversions.command("export")
@click.option("--platform", type=click.Choice(["metrica", "google_ads"]), required=True)
@click.option("--site", "site_id", type=int, required=True)
@click.option("--out", "out", type=click.Path(dir_okay=False, writable=True), required=True,
              help="the CSV file to write ('-' for standard output)")
@click.option("--mark", is_flag=True, help="log the file's rows as exported, so later files and `send` leave "
                                          "them out (without it nothing is recorded)")
@pass_ctx
def conversions_export(ctx: Context, platform: str, site_id: int, out: str, mark: bool) -> None:
    """Write the upload file of a site's conversions not yet sent or exported."""
    from astertrack.db.engine import begin_write, session_scope
    from astertrack.db.types import utcnow
    from astertrack.integrations.conversions import export, sender

    with session_scope(ctx.session_factory) as session:
        if mark:
            begin_write(session)
        try:
            result = export.build(session, site_id, platform, utcnow(), mark=mark,
                                  call_url=lambda call_id: sender.call_url(ctx.config, call_id))
        except export.ExportError as exc:
            raise click.ClickException({"no_settings": f"site {site_id} has no conversion settings",
                                        "no_conversion_name": "set the Google Ads conversion name first",
                                        }.get(exc.code, str(exc))) from None
        with click.open_file(out, "w", encoding="utf-8") as handle:
            handle.write(result.text)
    reasons = ", ".join(f"{reason} {number}" for reason, number in sorted(result.skipped.items()))
    click.echo(f"{platform}: {result.rows} rows written to {out}, skipped {sum(result.skipped.values())}"
               f"{f' ({reasons})' if reasons else ''}{'; marked as exported' if mark else ''}", err=out == "-")


@conversions.command("log")
@click.option("--site", "site_id", type=int, default=None)
@click.option("--platform", type=click.Choice(["ga4", "metrica", "google_ads"]), default=None)
@click.option("--status", type=click.Choice(["sending", "sent", "refused", "failed", "skipped", "exported"]),
              default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@pass_ctx
def conversions_log(ctx: Context, site_id: int | None, platform: str | None, status: str | None, limit: int) -> None:
    """The latest log rows: what was sent, refused (with the platform's answer) or skipped and why."""
    from sqlalchemy import select

    from astertrack.db.engine import session_scope
    from astertrack.db.models import ConversionLog

    query = select(ConversionLog).order_by(ConversionLog.updated_at.desc(), ConversionLog.id.desc()).limit(limit)
    if site_id is not None:
        query = query.where(ConversionLog.site_id == site_id)
    if platform:
        query = query.where(ConversionLog.platform == platform)
    if status:
        query = query.where(ConversionLog.status == status)
    with session_scope(ctx.session_factory) as session:
        rows = session.scalars(query).all()
        for row in rows:
            answer = (row.response_excerpt or "").replace("\n", " ")[:120]
            click.echo(f"{row.updated_at:%Y-%m-%d %H:%M} site {row.site_id} {row.platform:<10} {row.subject:<18} "
                       f"{row.status:<8} {row.reason or '':<13} {row.response_code or '':<4} {answer}".rstrip())
        if not rows:
            click.echo("no conversions logged")
