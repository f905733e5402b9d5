"""Static checks of the shipped dialplan against the variable contract (no Asterisk needed)."""

from __future__ import annotations

import re
from pathlib import Path

from astertrack.routing import dialplan_vars

CONF = Path(__file__).resolve().parents[2] / "asterisk-conf" / "extensions_astertrack.conf"
TEXT = CONF.read_text()
KNOWN = {value for name, value in vars(dialplan_vars).items() if name.isupper() and isinstance(value, str)}


def lines():
    return [line.split(";", 1)[0].strip() for line in TEXT.splitlines() if line.split(";", 1)[0].strip()]


def test_every_ct_variable_in_the_dialplan_is_a_declared_constant():
    used = set(re.findall(r"\bCT_[A-Z_]+\b", TEXT))
    assert used and used <= KNOWN, used - KNOWN


def test_agi_status_and_ct_status_are_checked_after_each_agi_call():
    body = lines()
    agi_lines = [i for i, line in enumerate(body) if "AGI(agi://" in line]
    assert len(agi_lines) == 2  # inbound and next
    for index in agi_lines:
        following = body[index + 1]
        assert 'AGISTATUS}" != "SUCCESS"' in following and 'CT_STATUS}" != "OK"' in following
        assert "astertrack-fallback,s,1" in following


def test_recording_name_comes_from_ct_recording_only():
    for line in lines():
        if "MixMonitor(" in line:
            assert "MixMonitor(${CT_RECORDING}.wav" in line and "CALLERID" not in line


def test_every_goto_label_exists():
    labels = set(re.findall(r"same => n\((\w+)\)", TEXT))
    targets = set()
    for condition in re.findall(r"\?([\w-]+(?:,[\w-]+,\d+)?)\)", TEXT):
        if "," not in condition:
            targets.add(condition)
    assert targets <= labels, targets - labels
    contexts = set(re.findall(r"^\[([\w-]+)\]", TEXT, re.M))
    for context in re.findall(r"Goto(?:If\([^?]*\?)?\(?([\w-]+),[\w${}:]+,1\)", TEXT):
        assert context in contexts or context.startswith("$"), context


def test_priorities_are_continuous_same_lines():
    current = None
    for line in TEXT.splitlines():
        stripped = line.split(";", 1)[0].rstrip()
        if stripped.startswith("exten =>"):
            current = stripped
        elif stripped.strip().startswith("same =>"):
            assert current is not None, f"'same' without an extension: {line}"
        elif stripped.startswith("["):
            current = None


def test_no_if_function_returns_a_value_containing_a_colon():
    """IF(cond?a:b) splits on ":" - a host:port or kind:target inside it silently breaks."""
    for branch in re.findall(r"\$\{IF\(\$\[[^\]]*\]\?([^)]*)\)\}", TEXT):
        true_part = branch.split(":", 1)[0]
        assert ":" not in true_part and "." not in true_part, branch
