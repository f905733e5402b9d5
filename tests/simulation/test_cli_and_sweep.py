"""``astertrack simulate`` and the sweep: the smallest pool is the smallest, outputs are complete and repeatable."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from astertrack.cli.main import main
from astertrack.simulation.model import ProductSettings, TrafficModel
from astertrack.simulation.sweep import Sweep, rules_of_thumb

ARGS = ["simulate", "--visits-per-day", "400", "--days", "0.5", "--seed", "4", "--pool-size", "2", "--sizes", "4,8",
        "--set", "caller_share=0.2"]


def test_the_smallest_pool_reaches_the_target_and_one_number_less_does_not():
    sweep = Sweep(TrafficModel(visits_per_day=500, caller_share=0.2), ProductSettings(), days=1, seed=2)
    found = sweep.smallest_pool(0.95, start=20)
    size = found.settings.pool_size
    assert found.score.accuracy >= 0.95 and found.score.calls > 50
    assert sweep.sizes([size - 1])[0].score.accuracy < 0.95
    assert rules_of_thumb(2000) == {"per_100_plus_1": 21, "per_20": 100}


def test_simulate_prints_json_and_csv_the_same_for_the_same_seed_with_progress():
    runner = CliRunner()
    first = runner.invoke(main, [*ARGS, "--format", "json"])
    assert first.exit_code == 0, first.output
    assert "pool    2" in first.stderr and "simulating 400 visits" in first.stderr  # progress on stderr
    result = json.loads(first.stdout)
    assert {"visits_per_day", "recommended_pool", "accuracy_at_recommended", "rules_of_thumb", "simulated_calls",
            "points"} <= set(result)
    assert result["model"]["caller_share"] == 0.2 and result["simulated_calls"] > 10
    assert {2, 4, 8} <= {p["settings"]["pool_size"] for p in result["points"]}
    again = runner.invoke(main, [*ARGS, "--format", "json"])
    assert json.loads(again.stdout) == result
    table = runner.invoke(main, [*ARGS, "--format", "csv", "--no-search"])
    rows = list(csv.DictReader(io.StringIO(table.stdout)))
    by_size = {int(row["pool_size"]): row for row in rows}
    assert {2, 4, 8} <= set(by_size)
    point = next(p for p in result["points"] if p["settings"]["pool_size"] == 8)
    assert float(by_size[8]["accuracy"]) == point["accuracy"]


def test_simulate_refuses_unknown_parameters_and_bad_sizes():
    runner = CliRunner()
    bad = runner.invoke(main, ["simulate", "--set", "no_such=1"])
    assert bad.exit_code == 2 and "unknown parameter 'no_such'" in bad.output
    assert runner.invoke(main, ["simulate", "--sizes", "3,x"]).exit_code == 2
    assert runner.invoke(main, ["simulate", "--set", "bot_share=1.5"]).exit_code == 2


def test_simulate_fits_the_traffic_of_a_stored_site(db_url, session, tmp_path):
    from astertrack.samples.factories import add_dynamic_source, add_pool, add_site
    from tests.simulation.test_whatif_page import HISTORY, store_history

    site = add_site(session, "Fitted", timezone="Europe/Moscow")
    source = add_dynamic_source(session, site, "yandex", add_pool(session, site, "main"))
    stored = store_history(session, site.id, source.id)
    config = tmp_path / "astertrack.conf"
    config.write_text(f"[database]\nurl = {db_url}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["-c", str(config), "simulate", "--fit-site", str(site.id), "--days", "0.3",
                                       "--no-search", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert f"fitted from {stored} sessions" in result.stderr
    model = json.loads(result.stdout)["model"]
    assert abs(model["visits_per_day"] / HISTORY.visits_per_day - 1) < 0.1
    assert model["caller_share"] == pytest.approx(HISTORY.caller_share, abs=0.03)
