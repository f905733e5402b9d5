"""``astertrack simulate``: attribution accuracy by pool size for a traffic model (#27).

Why a command: sizing a pool is a question asked before a campaign, away from the admin; the
benchmark and the admin's "what if" ask the same ``simulation.sweep.study``.  The simulation
runs in a scratch in-memory database; only ``--fit-site`` reads the configured one.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys
from typing import Any

import click

pass_ctx = click.pass_obj  # the command line's Context (astertrack.cli.main); not imported: no cycle
Context = Any


def _sizes(value: str | None) -> list[int]:
    if not value:
        return []
    try:
        sizes = [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        raise click.BadParameter("pool sizes are whole numbers separated by commas, e.g. 5,10,20") from None
    if any(size < 1 or size > 2000 for size in sizes):
        raise click.BadParameter("each pool size is between 1 and 2000")
    return sizes


@click.command("simulate")
@click.option("--visits-per-day", type=float, default=None, help="visits a day (default: the model's, 300)")
@click.option("--days", type=click.FloatRange(0.05, 60), default=7.0, show_default=True, help="simulated days")
@click.option("--seed", type=int, default=1, show_default=True, help="the same seed gives the same figures")
@click.option("--pool-size", type=click.IntRange(1, 2000), default=10, show_default=True, help="the current pool")
@click.option("--sizes", default=None, help="more pool sizes to simulate, e.g. 5,10,20")
@click.option("--target", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="find the smallest pool reaching this accuracy")
@click.option("--no-search", is_flag=True, help="only the given sizes: no smallest-pool search")
@click.option("--hold", "hold_seconds", type=click.IntRange(30, 86400), default=600, show_default=True)
@click.option("--unload-grace", type=click.IntRange(0, 3600), default=120, show_default=True)
@click.option("--release-grace", type=click.IntRange(0, 86400), default=900, show_default=True,
              help="the AGI's release_grace_seconds")
@click.option("--adaptive/--no-adaptive", default=False, help="the adaptive hold on")
@click.option("--grid-holds", default=None, help="holds (s) to compare at the smallest pool, e.g. 300,600,1200")
@click.option("--grid-graces", default=None, help="release graces (s) to compare there, e.g. 300,900")
@click.option("--grid-adaptive", is_flag=True, help="compare with and without the adaptive hold there")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="any traffic parameter, e.g. --set caller_share=0.08 (docs/simulation.md)")
@click.option("--fit-site", type=int, default=None, help="fit the traffic from this site's stored sessions and calls")
@click.option("--fit-days", type=click.IntRange(1, 365), default=28, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default="-", help="file ('-': stdout)")
@pass_ctx
def simulate(ctx: Context, visits_per_day: float | None, days: float, seed: int, pool_size: int, sizes: str | None,
             target: float, no_search: bool, hold_seconds: int, unload_grace: int, release_grace: int,
             adaptive: bool, grid_holds: str | None, grid_graces: str | None, grid_adaptive: bool,
             sets: tuple[str, ...], fit_site: int | None, fit_days: int, fmt: str, out: str) -> None:
    """Simulate the traffic through the product's own code; print accuracy by pool size."""
    from astertrack.simulation.model import ProductSettings, TrafficModel
    from astertrack.simulation.sweep import CSV_COLUMNS, study

    model = TrafficModel()
    if fit_site is not None:
        from astertrack.db.types import utcnow
        from astertrack.simulation.fit import fit_model

        now = utcnow()
        with ctx.session_factory() as session:
            fitted = fit_model(session, fit_site, now - dt.timedelta(days=fit_days), now)
        click.echo(f"fitted from {fitted.sessions} sessions and {fitted.calls} calls of site {fit_site}; "
                   f"defaults kept: {', '.join(fitted.defaults) or 'none'}", err=True)
        model = fitted.model
    values: dict[str, str] = {}
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--set")
        values[name.strip()] = value.strip()
    try:
        if visits_per_day is not None:
            values["visits_per_day"] = str(visits_per_day)
        model = model.with_values(**values)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from None
    base = ProductSettings(pool_size=pool_size, hold_seconds=hold_seconds, unload_grace_seconds=unload_grace,
                           release_grace_seconds=release_grace, adaptive_hold=adaptive)
    click.echo(f"simulating {model.visits_per_day:g} visits a day over {days:g} days, seed {seed}", err=True)
    result = study(model, base, days, seed, _sizes(sizes), None if no_search else target,
                   holds=_sizes(grid_holds), graces=[int(g) for g in (grid_graces or "").split(",") if g.strip()],
                   adaptive=grid_adaptive, report=lambda line: click.echo(line, err=True))
    stream = sys.stdout if out == "-" else open(out, "w", newline="", encoding="utf-8")  # noqa: SIM115
    try:
        if fmt == "json":
            json.dump({k: v for k, v in result.items() if k != "csv"}, stream, ensure_ascii=False, indent=2)
            stream.write("\n")
        elif fmt == "csv":
            writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(result["csv"])
        else:
            _text(result, stream)
    finally:
        if stream is not sys.stdout:
            stream.close()


def _text(result: dict[str, Any], stream) -> None:
    stream.write(f"{result['visits_per_day']:g} visits/day, {result['simulated_calls']} calls simulated\n")
    stream.write(f"{'pool':>6} {'accuracy':>9} {'all calls':>9} {'wrong src':>9} {'unattr.':>8} {'overflows':>9}\n")
    for row in result["csv"]:
        other = "" if row["hold_seconds"] == result["settings"]["hold_seconds"] else f" hold {row['hold_seconds']}s"
        other += " adaptive" if row["adaptive_hold"] != result["settings"]["adaptive_hold"] else ""
        other += "" if row["release_grace_seconds"] == result["settings"]["release_grace_seconds"] else (
            f" grace {row['release_grace_seconds']}s")
        stream.write(f"{row['pool_size']:>6} {row['accuracy']:>9.4f} {row['accuracy_all']:>9.4f} "
                     f"{row['wrong_source']:>9} {row['unattributed']:>8} {row['overflows']:>9}{other}\n")
    if result["target"] is not None:
        found = result["recommended_pool"]
        said = "none up to 2000" if found is None else f"{found} (accuracy {result['accuracy_at_recommended']:.4f})"
        stream.write(f"smallest pool reaching {result['target']:.2%}: {said}\n")
    for name, thumb in result["rules_of_thumb"].items():
        stream.write(f"rule of thumb {name}: {thumb['pool_size']} numbers, accuracy {thumb['accuracy']:.4f}\n")
