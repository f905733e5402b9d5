"""Logging to journald with structured fields, without the python-systemd dependency.

Under systemd (``JOURNAL_STREAM`` is set and the journal socket exists) each record is sent
as one datagram of the native journal protocol: ``MESSAGE``, ``PRIORITY``,
``SYSLOG_IDENTIFIER``, ``LOGGER``, ``CODE_FILE``/``CODE_LINE``/``CODE_FUNC``, ``NODE`` and any
``extra=`` field whose name is upper-case, e.g.
``log.info("routed", extra={"CALL_UID": uid, "DID": did})`` — then
``journalctl -u astertrack-agi CALL_UID=…`` finds every line of one call.
Elsewhere (a terminal, ``astertrack run``, tests) it is plain stderr.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import traceback

JOURNAL_SOCKET = "/run/systemd/journal/socket"
_FIELD = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _priority(levelno: int) -> int:
    for level in sorted(_PRIORITY, reverse=True):
        if levelno >= level:
            return _PRIORITY[level]
    return 7


def _encode(name: str, value: object) -> bytes:
    data = str(value).encode("utf-8", "replace")
    key = name.encode()
    if b"\n" in data:  # the binary form: name, newline, 64-bit little-endian length, data
        return key + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
    return key + b"=" + data + b"\n"


class JournalHandler(logging.Handler):
    """Send records to journald's native socket; fall back to stderr if a send fails."""

    def __init__(self, identifier: str, node: str | None = None, socket_path: str = JOURNAL_SOCKET):
        super().__init__()
        self.identifier = identifier
        self.node = node
        self.socket_path = socket_path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.fallback = logging.StreamHandler(sys.stderr)

    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        out: dict[str, object] = {
            "MESSAGE": message, "PRIORITY": _priority(record.levelno), "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name, "CODE_FILE": record.pathname, "CODE_LINE": record.lineno,
            "CODE_FUNC": record.funcName, "THREAD_NAME": record.threadName,
        }
        if self.node:
            out["NODE"] = self.node
        for key, value in record.__dict__.items():
            if key not in _STANDARD and _FIELD.match(key) and value is not None:
                out[key] = value
        return out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            payload = b"".join(_encode(k, v) for k, v in self.fields(record).items())
            self.sock.sendto(payload, self.socket_path)
        except OSError:
            self.fallback.emit(record)
        except Exception:  # noqa: BLE001 - logging must never raise into the app
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def under_journald(environ=os.environ, socket_path: str = JOURNAL_SOCKET) -> bool:
    return bool(environ.get("JOURNAL_STREAM")) and os.path.exists(socket_path)


def setup_logging(level: str | int, identifier: str, node: str | None = None,
                  socket_path: str = JOURNAL_SOCKET, environ=os.environ) -> logging.Handler:
    """Configure the root logger once for a daemon: journald when under systemd, else stderr."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if under_journald(environ, socket_path):
        handler: logging.Handler = JournalHandler(identifier, node, socket_path)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    return handler
