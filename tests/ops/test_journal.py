"""Structured journald logging over a real AF_UNIX datagram socket standing in for journald."""

from __future__ import annotations

import logging
import socket

import pytest

from astertrack.ops.journal import JournalHandler, setup_logging


def parse(datagram: bytes) -> dict[str, str]:
    """Decode the native journal protocol (both the KEY=value and the binary length form)."""
    fields, rest = {}, datagram
    while rest:
        head, sep, tail = rest.partition(b"\n")
        if b"=" in head:
            key, _, value = head.partition(b"=")
            fields[key.decode()] = value.decode()
            rest = tail
        else:
            size = int.from_bytes(tail[:8], "little")
            fields[head.decode()] = tail[8:8 + size].decode()
            rest = tail[8 + size + 1:]
    return fields


@pytest.fixture
def journald(tmp_path):
    path = str(tmp_path / "journal.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    yield path, server
    server.close()


def test_records_carry_structured_fields(journald):
    path, server = journald
    handler = JournalHandler("astertrack-agi", node="pbx2", socket_path=path)
    log = logging.getLogger("test.journal.fields")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.warning("routed %s", "call", extra={"CALL_UID": "abc123", "DID": "+74950000101", "lower": "ignored"})
        fields = parse(server.recv(65536))
        assert fields["MESSAGE"] == "routed call"
        assert fields["PRIORITY"] == "4"
        assert fields["SYSLOG_IDENTIFIER"] == "astertrack-agi" and fields["NODE"] == "pbx2"
        assert fields["CALL_UID"] == "abc123" and fields["DID"] == "+74950000101"
        assert "lower" not in fields and fields["LOGGER"] == "test.journal.fields"
        try:
            raise ValueError("line one\nline two")
        except ValueError:
            log.exception("failed")
        fields = parse(server.recv(65536))
        assert fields["PRIORITY"] == "3"
        assert fields["MESSAGE"].startswith("failed\nTraceback") and "line two" in fields["MESSAGE"]
    finally:
        log.removeHandler(handler)
        handler.close()


def test_setup_picks_journald_only_under_systemd(journald, capsys):
    path, server = journald
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        handler = setup_logging("INFO", "astertrack-ami", socket_path=path, environ={"JOURNAL_STREAM": "8:123"})
        assert isinstance(handler, JournalHandler)
        logging.getLogger("x").info("hello")
        assert parse(server.recv(65536))["MESSAGE"] == "hello"
        handler.close()
        handler = setup_logging("INFO", "astertrack-ami", socket_path=path, environ={})
        assert not isinstance(handler, JournalHandler)
        logging.getLogger("x").info("to stderr")
        assert "INFO x: to stderr" in capsys.readouterr().err
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_falls_back_to_stderr_when_journald_is_gone(tmp_path, capsys):
    handler = JournalHandler("astertrack-web", socket_path=str(tmp_path / "missing.sock"))
    log = logging.getLogger("test.journal.fallback")
    log.addHandler(handler)
    try:
        log.error("still visible")
    finally:
        log.removeHandler(handler)
        handler.close()
    assert "still visible" in capsys.readouterr().err
