"""The AGI protocol class: quoting, result codes, inline HANGUP, environment limits; the route registry."""

from __future__ import annotations

import asyncio
import importlib

import pytest

from agi import registry
from agi.protocol import (
    AGIAppError,
    AGIChannel,
    AGIConnectionClosed,
    AGIDeadChannel,
    AGIHangup,
    AGIHeaderTooLong,
    AGIInvalidCommand,
    AGIProtocolError,
    AGIUsageError,
    parse_result,
    quote,
)
from tests.agi.fake_asterisk import split_args


class Wire:
    def __init__(self):
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data

    async def drain(self) -> None:
        return None


def talk(replies: bytes, body, limit: int = 2**16):
    """Run ``await body(channel, wire)`` against canned Asterisk replies."""
    async def main():
        reader = asyncio.StreamReader(limit=limit)
        reader.feed_data(replies)
        reader.feed_eof()
        wire = Wire()
        return await body(AGIChannel(reader, wire), wire)

    return asyncio.run(main())


@pytest.mark.parametrize("value", ['plain', 'with "quotes"', 'back\\slash', 'ends with \\', '', 'кириллица',
                                   'a,b|c', '${SHELL(id)}'])
def test_quoted_values_survive_asterisks_argument_parser(value):
    assert split_args(f"SET VARIABLE X {quote(value)}") == ["SET", "VARIABLE", "X", value]


def test_line_breaks_cannot_smuggle_a_second_command():
    quoted = quote('x"\nEXEC System "rm -rf /')
    assert "\n" not in quoted and "\r" not in quoted
    assert split_args(f"SET VARIABLE X {quoted}")[3] == 'x" EXEC System "rm -rf /'


def test_parse_result_data_and_extras():
    assert parse_result("200 result=1 (NOT_INUSE)").data == "NOT_INUSE"
    assert parse_result("200 result=1 (a (nested) value)").data == "a (nested) value"
    r = parse_result("200 result=0 (timeout) endpos=1234")
    assert (r.result, r.data, r.extra) == (0, "timeout", "endpos=1234")
    assert parse_result("200 result=0").data is None
    with pytest.raises(AGIProtocolError):
        parse_result("200 nonsense")


def test_get_variable_set_and_unset():
    async def body(ch, wire):
        assert await ch.get_variable("CHANNEL(linkedid)") == "1795439737.0"
        assert await ch.get_variable("NOPE") is None
        assert wire.sent == b"GET VARIABLE CHANNEL(linkedid)\nGET VARIABLE NOPE\n"
    talk(b"200 result=1 (1795439737.0)\n200 result=0\n", body)


def test_error_codes_raise_typed_exceptions():
    async def invalid(ch, _):
        with pytest.raises(AGIInvalidCommand):
            await ch.command("BOGUS")
    talk(b"510 Invalid or unknown command\n", invalid)

    async def usage(ch, _):
        with pytest.raises(AGIUsageError) as err:
            await ch.command("SET VARIABLE")
        assert "Usage: SET VARIABLE" in err.value.usage
        assert (await ch.command("NOOP")).result == 1  # the multi-line usage was consumed entirely
    talk(b"520-Invalid command syntax.  Proper usage follows:\n"
         b"Usage: SET VARIABLE <variablename> <value>\n520 End of proper usage.\n200 result=1\n", usage)

    async def dead(ch, _):
        with pytest.raises(AGIDeadChannel):
            await ch.command("SET VARIABLE A 1")
        assert ch.hung_up
    talk(b"511 Command Not Permitted on a dead channel or intercept routine\n", dead)

    async def app_error(ch, _):
        with pytest.raises(AGIAppError):
            await ch.exec_app("Foo", "bar")
    talk(b"200 result=-1\n", app_error)


def test_inline_hangup_line_before_the_reply():
    async def body(ch, _):
        assert await ch.set_variable("A", "1") is None  # the command itself went through
        assert ch.hung_up
        with pytest.raises(AGIHangup):
            await ch.set_variable("B", "2")  # nothing more is sent to a hung-up channel
    talk(b"HANGUP\n200 result=1\n", body)

    async def failed_exec(ch, _):
        with pytest.raises(AGIHangup):
            await ch.exec_app("UserEvent", "x")
    talk(b"HANGUP\n200 result=-1\n", failed_exec)


def test_eof_is_a_closed_connection():
    async def body(ch, _):
        with pytest.raises(AGIConnectionClosed):
            await ch.command("NOOP")
    talk(b"", body)


def test_environment_args_and_crlf():
    async def body(ch, _):
        env = await ch.read_environment()
        assert env.script == "next" and env.args == ["NOANSWER", "x y"]
        assert env.get("agi_accountcode") == ""
    talk(b"agi_network_script: next\r\nagi_accountcode: \r\nagi_arg_1: NOANSWER\r\nagi_arg_2: x y\r\n"
         b"agi_arg_4: skipped\r\n\r\n", body)


def test_environment_and_replies_split_across_segments_are_reassembled():
    """TCP may cut anywhere: lines split over segments, several lines in one segment."""
    wire_bytes = (b"agi_network_script: inbound\nagi_callerid: 79161234567\nagi_arg_1: 74950000101\n\n"
                  b"200 result=1 (NOT_INUSE)\nHANGUP\n200 result=1\n200 result=1 (tail")

    async def main():
        reader = asyncio.StreamReader()

        async def trickle():
            for start in range(0, len(wire_bytes), 3):
                reader.feed_data(wire_bytes[start:start + 3])
                await asyncio.sleep(0)
            reader.feed_eof()

        feeder = asyncio.create_task(trickle())
        ch = AGIChannel(reader, Wire())
        env = await ch.read_environment()
        assert env.script == "inbound" and env.args == ["74950000101"]
        assert env.get("agi_callerid") == "79161234567"
        assert await ch.get_full_variable("${DEVICE_STATE(PJSIP/101)}") == "NOT_INUSE"
        await ch.set_variable("A", "1")
        assert ch.hung_up  # the inline HANGUP between two replies was seen
        ch.hung_up = False
        with pytest.raises(AGIConnectionClosed):  # a reply cut off by EOF is not a reply
            await ch.command("NOOP")
        await feeder

    asyncio.run(main())


@pytest.mark.parametrize("limit", [2**16, 128])
def test_over_long_line_is_drained_to_the_blank_line_then_refused(limit):
    long_line = b"agi_calleridname: " + b"A" * 100_000 + b"\n"

    async def body(ch, _):
        ch.max_line = 100 if limit == 128 else ch.max_line
        with pytest.raises(AGIHeaderTooLong):
            await ch.read_environment()
        assert (await ch.command("NOOP")).result == 1  # the stream is aligned on the next reply
    talk(b"agi_network_script: inbound\n" + long_line + b"agi_x: y\n\n200 result=1\n", body, limit=limit)


def test_duplicate_route_names_are_refused_at_import():
    importlib.import_module("agi.routes")  # what the app does at import: registers every route
    with pytest.raises(registry.DuplicateRouteError):
        @registry.route("inbound")
        async def another_inbound(request):  # pragma: no cover - never registered
            pass
    with pytest.raises(registry.UnknownRouteError):
        registry.lookup("no-such-route")
    assert {"inbound", "next", "ping"} <= set(registry.ROUTES)


def send_variables(pairs: list[tuple[str, str]], replies: bytes) -> bytes:
    """What ``set_variables(pairs)`` writes to the wire, Asterisk answering with ``replies``."""
    async def body(ch, wire):
        await ch.set_variables(pairs)
        return wire.sent

    return talk(replies, body)


def _mset_lines(sent: bytes) -> list[str]:
    return [line for line in sent.decode().splitlines() if line.startswith("EXEC MSet")]


def _as_asterisk_sets(sent: bytes) -> list[tuple[str, str]]:
    """Replay what we sent the way Asterisk applies it: SET VARIABLE and MSet, in order."""
    from tests.agi.fake_asterisk import mset_pairs

    applied = []
    for line in sent.decode().splitlines():
        parts = split_args(line)
        if parts[:2] == ["SET", "VARIABLE"]:
            applied.append((parts[2], parts[3]))
        elif parts[:2] == ["EXEC", "MSet"]:
            applied += mset_pairs(parts[2])
    return applied


def test_set_variables_batches_plain_values_in_one_mset_with_the_last_pair_last():
    pairs = [("CT_CALL_ID", "abc123"), ("CT_SOURCE", "Яндекс Директ"), ("CT_QUEUE", ""),
             ("CT_DIAL", "PJSIP/101&PJSIP/102"), ("CT_STATUS", "OK")]

    sent = send_variables(pairs, b"200 result=0\n")
    assert len(sent.decode().splitlines()) == 1  # one round trip for five variables
    assert _as_asterisk_sets(sent) == pairs


@pytest.mark.parametrize("hostile", ["x,CT_DIAL=PJSIP/evil", "${SHELL(id)}", 'a"b', "a\\,b", "(x,y)", "[,]",
                                     "a|CT_DIAL=1", "x=y"])
def test_values_that_msets_split_would_change_go_one_by_one(hostile):
    pairs = [("CT_CAMPAIGN", hostile), ("CT_DIAL", "PJSIP/101"), ("CT_STATUS", "OK")]

    sent = send_variables(pairs, b"200 result=1\n200 result=0\n")
    assert _as_asterisk_sets(sent) == pairs  # nothing injected, nothing lost, status last
    assert all(hostile not in line for line in _mset_lines(sent))


def test_a_function_name_and_closed_brackets_ride_in_the_mset():
    """The caller-id prefix (``[google-ads] Ivan``) costs no round trip of its own."""
    pairs = [("CT_DIAL", "PJSIP/101"), ("CALLERID(name)", "[google-ads] Ivan (VIP)"), ("CT_X", "a) b]"),
             ("CT_STATUS", "OK")]

    sent = send_variables(pairs, b"200 result=0\n")
    assert len(sent.decode().splitlines()) == 1
    assert _as_asterisk_sets(sent) == pairs


@pytest.mark.parametrize("unclosed", ["[Direct", "a (b", "((x)", "[a]["])
def test_a_value_that_leaves_a_bracket_open_goes_alone(unclosed):
    """An open ``(`` or ``[`` would swallow the commas after it: the next pairs would merge."""
    pairs = [("CALLERID(name)", unclosed), ("CT_DIAL", "PJSIP/101"), ("CT_STATUS", "OK")]

    sent = send_variables(pairs, b"200 result=1\n200 result=0\n")
    assert _as_asterisk_sets(sent) == pairs
    assert all(unclosed not in line for line in _mset_lines(sent))


def test_an_mset_carries_at_most_24_pairs():
    """Older Asterisks' MSet parses 24 pairs; more would be dropped silently."""
    pairs = [(f"CT_V{i}", str(i)) for i in range(30)] + [("CT_STATUS", "OK")]

    sent = send_variables(pairs, b"200 result=0\n" * 3)
    lines = _mset_lines(sent)
    assert len(lines) == 2 and all(line.count("=") <= 24 for line in lines)
    assert _as_asterisk_sets(sent) == pairs


def test_an_unbatchable_last_pair_still_goes_last():
    pairs = [("CT_DIAL", "PJSIP/101"), ("CT_SOURCE", "a,b")]

    sent = send_variables(pairs, b"200 result=0\n200 result=1\n")
    assert _as_asterisk_sets(sent) == pairs
    assert sent.decode().splitlines()[-1] == 'SET VARIABLE CT_SOURCE "a,b"'


def test_long_batches_are_split_below_asterisks_command_buffer():
    pairs = [(f"CT_V{i}", "x" * 300) for i in range(12)] + [("CT_STATUS", "OK")]

    sent = send_variables(pairs, b"200 result=0\n" * 10)
    lines = _mset_lines(sent)
    assert len(lines) > 1 and all(len(line.encode()) < 2048 for line in lines)
    assert _as_asterisk_sets(sent) == pairs


def test_an_asterisk_without_mset_gets_plain_set_variable():
    pairs = [("CT_DIAL", "PJSIP/101"), ("CT_STATUS", "OK")]

    # EXEC of an unknown application answers result=-2
    sent = send_variables(pairs, b"200 result=-2\n200 result=1\n200 result=1\n")
    assert sent.decode().splitlines()[1:] == ['SET VARIABLE CT_DIAL "PJSIP/101"', 'SET VARIABLE CT_STATUS "OK"']
