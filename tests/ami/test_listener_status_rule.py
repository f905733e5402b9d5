"""The rule "is Asterisk followed now, since when, which nodes" (callflow/listener_status), on a fake clock."""

from __future__ import annotations

import datetime as dt

from astertrack.callflow import listener_status as ls
from astertrack.callflow.listener_status import NodeRow, assess, next_since

T0 = dt.datetime(2026, 12, 6, 11, 2, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def row(state: str, since: float = 0, heartbeat: float = 0, node: str = "pbx1", error: str | None = None) -> NodeRow:
    return NodeRow(node, state, at(since), at(heartbeat), error)


def test_no_listener_ever_is_not_followed_and_no_call_is_followed():
    status = assess([], at(0))
    assert not status.followed and status.never_ran and status.down_since is None
    assert not status.call_followed("pbx1", "ringing", at(-5))
    assert status.call_followed("pbx1", "finished", at(-5))  # a finished call is not in question
    assert status.as_dict() == {"followed": False, "never_ran": True, "since": None, "nodes": []}


def test_logged_in_with_a_fresh_heartbeat_is_followed_until_the_heartbeat_is_stale():
    rows = [row(ls.LOGGED_IN, since=0, heartbeat=100)]
    assert assess(rows, at(100)).followed
    assert assess(rows, at(115)).followed  # 15 s: a few missed ticks and some skew are tolerated
    stale = assess(rows, at(116))
    assert not stale.followed and not stale.never_ran
    node = stale.down[0]
    # killed (SIGKILL writes nothing): not followed since its last sign of life
    assert (node.problem, node.down_since) == (ls.STALE, at(100))
    assert stale.down_since == at(100)


def test_disconnected_not_logged_in_and_stopped_are_down_since_their_since():
    for state in (ls.DISCONNECTED, ls.CONNECTED, ls.STOPPED):
        status = assess([row(state, since=10, heartbeat=60, error="Connection refused")], at(61))
        assert not status.followed
        node = status.down[0]
        assert (node.problem, node.down_since, node.last_error) == (state, at(10), "Connection refused")


def test_a_dead_listener_that_was_already_disconnected_keeps_the_outage_start():
    status = assess([row(ls.DISCONNECTED, since=10, heartbeat=60)], at(200))
    assert (status.down[0].problem, status.down_since) == (ls.STALE, at(10))


def test_several_nodes_one_down_names_only_that_node_and_only_its_calls_are_unfollowed():
    rows = [row(ls.LOGGED_IN, since=0, heartbeat=100, node="pbx2"),
            row(ls.DISCONNECTED, since=50, heartbeat=100, node="pbx1")]
    status = assess(rows, at(101))
    assert not status.followed
    assert [n.node for n in status.nodes] == ["pbx1", "pbx2"]
    assert [n.node for n in status.down] == ["pbx1"] and status.down_since == at(50)
    assert not status.call_followed("pbx1", "up", at(60))
    assert status.call_followed("pbx2", "up", at(60))
    assert not status.call_followed("pbx3", "ringing", at(60))  # a node with no listener at all
    assert status.as_dict()["nodes"][0] == {"node": "pbx1", "state": "disconnected", "problem": "disconnected",
                                            "since": at(50).isoformat(), "last_error": None}


def test_a_call_from_before_the_login_is_unfollowed_until_the_resync_settles():
    rows = [row(ls.LOGGED_IN, since=100, heartbeat=104)]
    assert not assess(rows, at(104)).call_followed("pbx1", "ringing", at(90))
    assert assess(rows, at(104)).call_followed("pbx1", "ringing", at(101))  # started after the login
    assert assess(rows, at(110)).call_followed("pbx1", "ringing", at(90))  # adopted (or swept) by now


def test_since_moves_only_when_the_node_becomes_followed_or_stops_being_followed():
    assert next_since(None, ls.DISCONNECTED, at(5)) == at(5)
    down = row(ls.DISCONNECTED, since=5, heartbeat=30)
    assert next_since(down, ls.CONNECTED, at(31)) == at(5)
    assert next_since(down, ls.STOPPED, at(40)) == at(5)
    assert next_since(row(ls.STOPPED, since=5, heartbeat=40), ls.DISCONNECTED, at(90), restarted=True) == at(5)
    assert next_since(down, ls.LOGGED_IN, at(32)) == at(32)
    up = row(ls.LOGGED_IN, since=32, heartbeat=60)
    assert next_since(up, ls.LOGGED_IN, at(61)) == at(32)
    assert next_since(up, ls.DISCONNECTED, at(61)) == at(61)
    # the process was killed while logged in: the outage began at its last heartbeat
    assert next_since(up, ls.DISCONNECTED, at(300), restarted=True) == at(60)
    assert next_since(up, ls.LOGGED_IN, at(300), restarted=True) == at(300)
