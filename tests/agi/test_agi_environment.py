"""A header smuggled into the AGI environment (issue #19 §5) cannot change the route, the DID or the caller.

Asterisk writes each ``agi_*`` header once, in a fixed order (res_agi.c: ``agi_network`` and
``agi_network_script`` first, then ``agi_request`` ... ``agi_callerid``, ``agi_calleridname`` ...
``agi_threadid``, then the ``agi_arg_N``), and writes the values raw: a caller name holding
``x\\nagi_extension: 74950000999`` reaches us as one more header line, *between* the real
``agi_calleridname`` and the real ``agi_callingpres``.  The blocks below are the recorded Asterisk 20
sessions with such a name, byte for byte what Asterisk would send.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import select

from agi.protocol import AGIChannel, AGIEnvironment
from astertrack.db.models import Call
from astertrack.routing import dialplan_vars as v
from tests.agi.conftest import AGI_DIR, recording
from tests.agi.fake_asterisk import FakeAsterisk, load_recording, run

NAME = "Ivan Petrov"


def read_environment(env: list[tuple[str, str]]) -> AGIEnvironment:
    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(FakeAsterisk.encode_environment(env))
        reader.feed_eof()
        return await AGIChannel(reader, None).read_environment()

    return asyncio.run(main())


def with_caller_name(name: str, caller_name: str, script: str | None = "inbound", args=None):
    """The recorded session ``name`` as Asterisk would send it for a caller named ``caller_name``."""
    return FakeAsterisk.environment(recording(name), overrides={"agi_calleridname": caller_name},
                                    script=script, args=args)


def classic(env: list[tuple[str, str]], route: str) -> list[tuple[str, str]]:
    """The same block for a classic AGI script: no agi_network lines, the route as agi_arg_1."""
    return [(k, val) for k, val in env if not k.startswith("agi_network")] + [("agi_arg_1", route)]


def reported(env: AGIEnvironment, name: str) -> bool:
    return any(name in problem for problem in env.problems)


@pytest.mark.parametrize("path", sorted(AGI_DIR.glob("*.txt")), ids=lambda p: p.stem)
def test_every_recorded_asterisk_environment_reads_without_a_problem(path):
    """The guard for the rules below: what a real Asterisk sends is read as it was sent."""
    rec = load_recording(path)

    env = read_environment(rec.env)

    assert env.problems == []
    assert env.headers == rec.env_dict


def test_an_extension_smuggled_in_the_caller_name_keeps_the_extension_asterisk_sent_and_is_reported():
    # the smuggled line arrives first: Asterisk writes the name before the extension
    env = read_environment(with_caller_name("pjsip_fastagi_1", f"{NAME}\nagi_extension: 74950000999"))

    assert env.get("agi_extension") == "74950000101"
    assert env.get("agi_calleridname") == NAME
    assert reported(env, "agi_extension")


def test_a_caller_id_smuggled_in_the_caller_name_keeps_the_caller_id_asterisk_sent_and_is_reported():
    # the smuggled line arrives second: Asterisk writes the number before the name
    env = read_environment(with_caller_name("pjsip_fastagi_1", f"{NAME}\nagi_callerid: 79990000000"))

    assert env.get("agi_callerid") == "79161234567"
    assert reported(env, "agi_callerid")


@pytest.mark.parametrize("smuggled", ["agi_uniqueid: 1.1", "agi_request: agi://127.0.0.1:4573/next",
                                      "agi_dnid: 74950000999", "agi_threadid: 1"])
def test_any_header_smuggled_in_the_caller_name_keeps_asterisks_value(smuggled):
    name, _, fake = smuggled.partition(": ")
    rec = recording("pjsip_fastagi_1")

    env = read_environment(with_caller_name("pjsip_fastagi_1", f"{NAME}\n{smuggled}", script=None))

    assert env.get(name) == rec.env_dict[name] != fake
    assert reported(env, name)


def test_a_repeated_argument_keeps_the_first_value_and_is_reported():
    # the first copy is Asterisk's: a second one can only come out of the argument's own value
    env = read_environment(FakeAsterisk.environment(recording("pjsip_fastagi_3"), script="next",
                                                    args=["NOANSWER\nagi_arg_1: ANSWER"]))

    assert env.args == ["NOANSWER"]
    assert env.get("agi_arg_1") == "NOANSWER"
    assert reported(env, "agi_arg_1")


def test_an_argument_smuggled_in_the_caller_name_is_not_an_argument():
    # the shipped dialplan: AGI(agi://.../inbound,${AT_DID},${CHANNEL(linkedid)})
    env = read_environment(with_caller_name(
        "pjsip_fastagi_1", f"{NAME}\nagi_arg_1: 74950000999\nagi_arg_3: extra",
        args=["74950000101", "1795439737.0"]))

    assert env.args == ["74950000101", "1795439737.0"]
    assert env.get("agi_arg_3") == ""
    assert reported(env, "agi_arg_1") and reported(env, "agi_arg_3")


def test_an_argument_smuggled_in_the_caller_name_cannot_add_arguments_when_the_dialplan_passes_none():
    env = read_environment(with_caller_name("pjsip_fastagi_1", f"{NAME}\nagi_arg_1: 74950000999"))

    assert env.args == []
    assert reported(env, "agi_arg_1")


@pytest.mark.parametrize("mode", ["fastagi", "classic"])
def test_a_route_name_smuggled_in_the_caller_name_is_not_the_route(mode):
    env = with_caller_name("pjsip_fastagi_1", f"{NAME}\nagi_network: yes\nagi_network_script: next")
    if mode == "classic":  # no agi_network_script from Asterisk at all: the smuggled one would be the only one
        env = classic(env, "inbound")

    env = read_environment(env)

    assert env.script == ("inbound" if mode == "fastagi" else "")
    assert env.args == ([] if mode == "fastagi" else ["inbound"])
    assert reported(env, "agi_network_script")


# ------------------------------------------------ the same through the real FastAGI server


def the_call(session, call_uid: str) -> Call:
    session.expire_all()
    return session.execute(select(Call).where(Call.call_uid == call_uid)).scalar_one()


@pytest.fixture
def two_numbers(seed):
    seed.static_number("+74950000101", "google-ads")
    seed.static_number("+74950000102", "yandex-direct")
    seed.managers("101")
    seed.commit()


def test_a_recorded_call_with_another_did_in_the_caller_name_is_routed_on_the_did_asterisk_sent(
        agi, two_numbers, session, caplog):
    _, fake = agi
    caplog.set_level(logging.INFO, logger="agi")
    smuggled = f"{NAME}\nagi_dnid: 74950000102\nagi_extension: 74950000102\nagi_arg_1: 74950000102"
    env = with_caller_name("pjsip_fastagi_1", smuggled, args=["74950000101", "1795439737.0"])

    result = run(fake.session(env))

    assert result.variables[v.STATUS] == "OK"
    assert result.variables[v.SOURCE] == "google-ads"
    call = the_call(session, result.variables[v.CALL_ID])
    assert call.did == "+74950000101" and call.linkedid == "1795439737.0"
    assert call.caller_name == NAME
    assert "environment problems" in caplog.text and "agi_extension" in caplog.text


def test_a_recorded_call_with_a_route_and_caller_id_in_the_caller_name_is_routed_on_what_asterisk_sent(
        agi, two_numbers, session, caplog):
    _, fake = agi
    caplog.set_level(logging.INFO, logger="agi")
    smuggled = f"{NAME}\nagi_network_script: next\nagi_callerid: 79990000000\nagi_uniqueid: 1.1"
    env = with_caller_name("pjsip_fastagi_1", smuggled)

    result = run(fake.session(env, variables={"CHANNEL(linkedid)": "1795439737.0"}))

    assert result.variables[v.STATUS] == "OK"
    assert result.variables[v.SOURCE] == "google-ads"  # the inbound route ran, on DID 74950000101
    call = the_call(session, result.variables[v.CALL_ID])
    assert call.caller_number == "+79161234567" and call.uniqueid == "1795439737.0"
    assert "environment problems" in caplog.text and "agi_network_script" in caplog.text
