"""The shipped Prometheus alert rules parse and only name metrics astertrack exposes."""

from __future__ import annotations

import re
from pathlib import Path

from agi.metrics_fanin import UP_METRIC
from astertrack.ops import metrics

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "astertrack-alerts.yml"
# Names the database collector produces (it is not registered in the process registry).
DATABASE_METRICS = {
    "astertrack_database_up", "astertrack_calls_24h", "astertrack_calls_active", "astertrack_pool_numbers",
    "astertrack_pool_numbers_in_use", "astertrack_pool_utilisation_ratio", "astertrack_pool_overflows_24h",
    "astertrack_webhook_queue_depth", "astertrack_webhook_oldest_pending_age_seconds",
}


def exposed_names() -> set[str]:
    names = set(DATABASE_METRICS) | {UP_METRIC}  # added by the pre-forked AGI workers' shared metrics port
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            names.add(sample.name)
        # labelled families have no samples until first used: accept their series names too
        names.update(family.name + suffix for suffix in ("", "_total", "_bucket", "_count", "_sum"))
    return names


def test_rules_reference_only_real_metrics():
    # A plain reader for this file's simple layout (no YAML dependency in the test extras).
    rules, current = [], None
    for line in RULES.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("- alert:"):
            current = {"alert": stripped.split(":", 1)[1].strip()}
            rules.append(current)
        elif current is not None and ":" in stripped and not stripped.startswith("#"):
            key, _, value = stripped.partition(":")
            current.setdefault(key, value.strip())
    assert len(rules) >= 8
    known = exposed_names()
    for rule in rules:
        assert {"expr", "labels", "annotations", "summary"} <= set(rule), rule["alert"]
        used = set(re.findall(r"\bastertrack_[a-z0-9_]+", rule["expr"]))
        assert used and used <= known, (rule["alert"], used - known)
        assert re.search(r"severity: (warning|critical)", rule["labels"]), rule["alert"]
