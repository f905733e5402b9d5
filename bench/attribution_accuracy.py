#!/usr/bin/env python3
"""Attribution accuracy by pool size: 2,000 visits a day over 7 simulated days (#27).

The traffic model (``astertrack.simulation.model``, defaults but for the visits and a caller share
that gives at least 1,000 calls) is generated once with a fixed seed and replayed for each pool
size through the core product (``simulation.product.CoreProduct``): the tracker's own
``allocation.start_with`` / ``heartbeat_with`` / ``unload_with`` and the AGI inbound route's own
``attribution.attribute_call`` + ``record_caller``, on a simulated clock, in a scratch SQLite
database.  tests/simulation/test_parity.py runs a scenario through the real tracker WSGI app and the
real AGI server (fake Asterisk) beside it and asserts the same visit for every call.

- ``accuracy``: the share of calls made during the visit or minutes after it (what the pool size
  decides) attributed to exactly the caller's visit.  ``accuracy_all`` also counts calls to a
  number written down days ago and repeat calls.
- ``recommended_pool``: the smallest pool reaching ``--target`` (0.99), by doubling then bisection.
- ``rule_of_thumb_pool``: visits per day / 100 + 1 (``poolhealth.rule_of_thumb``); ``per_20``: one
  number per 20 daily visitors.

Run from the repo root:  python bench/attribution_accuracy.py   (``--days 1`` for a quick look)
The chart is a text table (matplotlib is not a dependency); the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from astertrack.simulation.model import ProductSettings, TrafficModel  # noqa: E402
from astertrack.simulation.sweep import study  # noqa: E402

CHART_WIDTH = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--visits-per-day", type=float, default=2000)
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--caller-share", type=float, default=0.08, help="human visits ending in a call")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--sizes", default="10,20,30,40,60", help="more pool sizes for the chart")
    args = parser.parse_args()
    model = TrafficModel(visits_per_day=args.visits_per_day, caller_share=args.caller_share)
    started = time.perf_counter()
    result = study(model, ProductSettings(pool_size=10), args.days, args.seed,
                   sizes=[int(s) for s in args.sizes.split(",") if s], target=args.target,
                   report=lambda line: print(f"[{time.perf_counter() - started:6.0f}s] {line}", file=sys.stderr,
                                             flush=True))
    print(f"\n{result['visits_per_day']:g} visits/day ({result['measured_visits_per_day']:g} simulated: returns past "
          f"the last day fall outside) over {args.days:g} days, {result['simulated_calls']} calls\n")
    print(f"{'pool':>5} | {'accuracy':>8} | {'all calls':>9} | {'wrong src':>9} | {'unattr.':>7} | chart")
    for row in result["csv"]:
        bar = "#" * round(row["accuracy"] * CHART_WIDTH)
        print(f"{row['pool_size']:>5} | {row['accuracy']:>8.4f} | {row['accuracy_all']:>9.4f} | "
              f"{row['wrong_source']:>9} | {row['unattributed']:>7} | {bar}")
    recommended = next((p for p in result["points"] if p["settings"]["pool_size"] == result["recommended_pool"]), None)
    if recommended:
        print(f"\nat the recommended {result['recommended_pool']} numbers, by confidence:")
        print(f"{'confidence':>10} | {'calls':>5} | {'correct':>7} | wrong share")
        for slot in recommended["by_confidence"]:
            if slot["calls"]:
                print(f"{slot['bucket']:>10} | {slot['calls']:>5} | {slot['correct']:>7} | {slot['wrong_share']:.3f}")
        print(f"mean confidence: correct {recommended['mean_confidence_correct']}, "
              f"wrong {recommended['mean_confidence_wrong']}")
    thumbs = result["rules_of_thumb"]
    figures = {
        "visits_per_day": result["visits_per_day"],
        "recommended_pool": result["recommended_pool"],
        "accuracy_at_recommended": result["accuracy_at_recommended"],
        "rule_of_thumb_pool": thumbs["per_100_plus_1"]["pool_size"],
        "accuracy_at_rule_of_thumb": thumbs["per_100_plus_1"]["accuracy"],
        "per_20_pool": thumbs["per_20"]["pool_size"],
        "accuracy_at_per_20": thumbs["per_20"]["accuracy"],
        "simulated_calls": result["simulated_calls"],
        "measured_visits_per_day": result["measured_visits_per_day"],
        "mean_confidence_correct": recommended["mean_confidence_correct"] if recommended else None,
        "mean_confidence_wrong": recommended["mean_confidence_wrong"] if recommended else None,
        "days": args.days,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
