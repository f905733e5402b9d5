"""Device states are asked several at a time (one GET FULL VARIABLE), with the same devices asked
as walking the candidates one by one, and an answer that does not split cleanly frees nobody."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agi.protocol import AGIChannel
from agi.routes.common import MAX_EXPRESSION, OFFER_AHEAD, device_states, take_free
from agi.settings import AgiSettings
from astertrack.routing import dialplan_vars as v
from astertrack.routing.rules import ManagerView
from tests.agi.fake_asterisk import split_args
from tests.agi.test_call_flows import inbound
from tests.agi.test_protocol import Wire


def _state_commands(result) -> list[str]:
    return [c for c in result.commands if c.startswith("GET FULL VARIABLE ${DEVICE_STATE(")]


def test_free_candidates_are_looked_for_in_one_command_per_round(agi, seed):
    assert OFFER_AHEAD == 2
    seed.static_number("+74950000101", "google-ads")
    m101, m102, m103, m104 = seed.managers("101", "102", "103", "104")
    seed.rule("sales", seed.group("sales", [m101, m102, m103, m104]), strategy="round_robin")
    seed.commit()
    _, fake = agi

    result = inbound(fake, "pjsip_fastagi_1", device_states={"PJSIP/101": "INUSE"})

    # two wanted: 101 and 102 together; 101 is busy, so one more (103); 104 is never asked
    assert _state_commands(result) == [
        "GET FULL VARIABLE ${DEVICE_STATE(PJSIP/101)},${DEVICE_STATE(PJSIP/102)}",
        "GET FULL VARIABLE ${DEVICE_STATE(PJSIP/103)}",
    ]
    assert result.device_queries == ["PJSIP/101", "PJSIP/102", "PJSIP/103"]
    assert result.variables[v.DIAL] == "PJSIP/102" and result.variables[v.STATUS] == "OK"


def test_a_big_ring_all_group_is_asked_in_chunks_asterisk_can_read(agi, seed):
    seed.static_number("+74950000300", "billboard")
    extensions = [f"{700 + i}-with-a-rather-long-endpoint-name" for i in range(60)]
    members = seed.managers(*extensions)
    seed.rule("billboard", seed.group("floor", members), strategy="ring_all")
    seed.commit()
    _, fake = agi
    busy = {f"PJSIP/{extensions[7]}": "INUSE", f"PJSIP/{extensions[45]}": "UNAVAILABLE"}

    result = inbound(fake, "pjsip_fastagi_8", device_states=busy)

    commands = _state_commands(result)
    assert len(commands) > 1  # 60 long names do not fit one command
    assert all(len(split_args(c)[3]) <= MAX_EXPRESSION for c in commands)
    assert result.device_queries == [f"PJSIP/{ext}" for ext in extensions]  # each once, in order
    dialled = result.variables[v.DIAL].split("&")
    assert dialled == [f"PJSIP/{ext}" for ext in extensions if f"PJSIP/{ext}" not in busy]


@dataclass
class _Request:
    channel: AGIChannel
    settings: AgiSettings


def _ask(reply: bytes, managers: list[ManagerView]):
    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(reply)
        reader.feed_eof()
        wire = Wire()
        request = _Request(AGIChannel(reader, wire), AgiSettings())
        return await device_states(request, managers), wire.sent

    return asyncio.run(main())


def _manager(mid: int, endpoint: str) -> ManagerView:
    return ManagerView(id=mid, endpoint=endpoint)


def test_an_answer_with_the_wrong_number_of_states_counts_as_unknown():
    managers = [_manager(1, "PJSIP/101"), _manager(2, "PJSIP/102")]
    states, sent = _ask(b"200 result=1 (NOT_INUSE)\n", managers)
    assert states == ["UNKNOWN", "UNKNOWN"]  # not free: better the next candidate than a wrong dial
    assert sent == b"GET FULL VARIABLE ${DEVICE_STATE(PJSIP/101)},${DEVICE_STATE(PJSIP/102)}\n"


def test_unsafe_endpoints_are_never_put_in_the_expression():
    managers = [_manager(1, "PJSIP/101"), _manager(2, "PJSIP/1${SHELL(id)}"), _manager(3, "PJSIP/103")]
    states, sent = _ask(b"200 result=1 (NOT_INUSE,INUSE)\n", managers)
    assert states == ["NOT_INUSE", "INVALID", "INUSE"]
    assert sent == b"GET FULL VARIABLE ${DEVICE_STATE(PJSIP/101)},${DEVICE_STATE(PJSIP/103)}\n"


def test_take_free_asks_only_as_many_as_are_still_missing():
    managers = [_manager(i, f"PJSIP/10{i}") for i in range(1, 6)]

    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(b"200 result=1 (INUSE,NOT_INUSE)\n200 result=1 (NOT_INUSE)\n")
        reader.feed_eof()
        wire = Wire()
        request = _Request(AGIChannel(reader, wire), AgiSettings())
        free, rest = await take_free(request, managers, 2)
        return free, rest, wire.sent

    free, rest, sent = asyncio.run(main())
    assert [m.id for m in free] == [2, 3] and [m.id for m in rest] == [4, 5]
    assert sent.decode().splitlines() == ["GET FULL VARIABLE ${DEVICE_STATE(PJSIP/101)},${DEVICE_STATE(PJSIP/102)}",
                                          "GET FULL VARIABLE ${DEVICE_STATE(PJSIP/103)}"]
