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

import pytest

from agi.protocol import AGIChannel, AGIEnvironment
from tests.agi.conftest import AGI_DIR
from tests.agi.fake_asterisk import FakeAsterisk, load_recording


def read_environment(env: list[tuple[str, str]]) -> AGIEnvironment:
    async def main():
        reader = asyncio.StreamReader()
        reader.feed_data(FakeAsterisk.encode_environment(env))
        reader.feed_eof()
        return await AGIChannel(reader, None).read_environment()

    return asyncio.run(main())


@pytest.mark.parametrize("path", sorted(AGI_DIR.glob("*.txt")), ids=lambda p: p.stem)
def test_every_recorded_asterisk_environment_reads_without_a_problem(path):
    """The guard for the rules below: what a real Asterisk sends is read as it was sent."""
    rec = load_recording(path)

    env = read_environment(rec.env)

    assert env.problems == []
    assert env.headers == rec.env_dict
