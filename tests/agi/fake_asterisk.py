"""A fake Asterisk for AGI tests: replays a recorded environment and answers commands.

It connects over TCP to the real FastAGI server (or talks to the real script over its
stdin/stdout), sends the ``agi_*`` block from a recording in tests/fixtures/asterisk/agi, answers
``GET VARIABLE`` / ``GET FULL VARIABLE`` from a dict of channel variables (defaults taken
from the recording's own replies) and device states, and records every ``SET VARIABLE``
and ``EXEC`` (``EXEC MSet`` sets its variables, split the way Asterisk splits them).  Commands are parsed the way Asterisk does (whitespace-separated, double
quotes group, backslash escapes), so a quoting bug in the server shows up here.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

_DEVICE_STATE = re.compile(r"\$\{DEVICE_STATE\(([^)]*)\)\}")
_VAR_EXPR = re.compile(r"^\$\{(.+)\}$")


@dataclass
class Recording:
    path: Path
    env: list[tuple[str, str]]
    exchanges: list[tuple[str, str]]  # (command sent by the recorded server, Asterisk's reply)

    @property
    def env_dict(self) -> dict[str, str]:
        return dict(self.env)

    def answers(self) -> dict[str, str]:
        """GET VARIABLE / GET FULL VARIABLE replies in the recording: name or expression -> value."""
        values = {}
        for command, reply in self.exchanges:
            parts = split_args(command)
            match = re.match(r"^200 result=1 \((.*)\)$", reply)
            if not match:
                continue
            if parts[:2] == ["GET", "VARIABLE"] and len(parts) > 2:
                values[parts[2]] = match.group(1)
            elif parts[:3] == ["GET", "FULL", "VARIABLE"] and len(parts) > 3:
                values[parts[3]] = match.group(1)
        return values

    def sets(self) -> dict[str, str]:
        """What the recorded server set, for comparison."""
        out = {}
        for command, _reply in self.exchanges:
            parts = split_args(command)
            if parts[:2] == ["SET", "VARIABLE"] and len(parts) >= 4:
                out[parts[2]] = parts[3]
        return out


def load_recording(path: str | Path) -> Recording:
    env: list[tuple[str, str]] = []
    exchanges: list[tuple[str, str]] = []
    section = None
    pending: str | None = None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("# --- raw environment"):
            section = "env"
            continue
        if line.startswith("# --- commands"):
            section = "commands"
            continue
        if line.startswith("#"):
            continue
        if section == "env":
            if not line.strip():
                section = None
                continue
            name, _, value = line.partition(":")
            env.append((name, value[1:] if value.startswith(" ") else value))
        elif section == "commands":
            if line.startswith(">> "):
                pending = line[3:]
            elif line.startswith("<< ") and pending is not None:
                exchanges.append((pending, line[3:]))
                pending = None
    return Recording(Path(path), env, exchanges)


def split_args(line: str) -> list[str]:
    """Asterisk's AGI argument splitting (res_agi.c parse_args): quotes group, ``\\`` escapes."""
    args: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    have = False
    for ch in line:
        if escaped:
            current.append(ch)
            escaped = False
            have = True
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
            have = True
        elif ch in " \t" and not in_quotes:
            if have:
                args.append("".join(current))
                current, have = [], False
        else:
            current.append(ch)
            have = True
    if have:
        args.append("".join(current))
    return args


_NESTING = {"(": ("paren", 1), ")": ("paren", -1), "[": ("bracket", 1), "]": ("bracket", -1)}


def separate_args(data: str, delim: str, max_args: int = 99) -> list[str]:
    """Asterisk's application argument split (``__ast_app_separate_args``, removing quotes and
    backslashes): ``delim`` splits outside quotes, parentheses and brackets; a trailing
    delimiter makes one more, empty, argument; past ``max_args`` the rest stays in the last."""
    args: list[str] = []
    current: list[str] = []
    depth = {"paren": 0, "bracket": 0}
    quote = False
    i = 0
    split_done = False
    while i < len(data):
        ch = data[i]
        if len(args) >= max_args - 1:
            current.append(ch)
        elif ch in _NESTING:
            kind, step = _NESTING[ch]
            depth[kind] = max(0, depth[kind] + step)
            current.append(ch)
        elif ch == '"' and delim != '"':
            quote = not quote
        elif ch == "\\":
            i += 1
            if i < len(data):
                current.append(data[i])
        elif ch == delim and not quote and not any(depth.values()):
            args.append("".join(current))
            current = []
            split_done = True
            i += 1
            continue
        else:
            current.append(ch)
        split_done = False
        i += 1
    if current or split_done:
        args.append("".join(current))
    return args


def mset_pairs(data: str) -> list[tuple[str, str]]:
    """What ``MSet(data)`` sets, in order (entries without ``=`` are ignored, as Asterisk does)."""
    pairs = []
    for entry in separate_args(data, ","):
        parts = separate_args(entry, "=", 2)
        if len(parts) == 2:
            pairs.append((parts[0], parts[1]))
    return pairs


def parse_user_event(data: str) -> tuple[str, dict[str, str]]:
    """``AstertrackRoute,call_id: x,source: y`` -> ("AstertrackRoute", {"call_id": "x", ...}),
    split the way Asterisk's UserEvent splits its arguments (brackets and parentheses nest)."""
    name, *body = separate_args(data, ",")
    headers = {}
    for part in body:
        key, _, value = part.partition(":")
        headers[key.strip()] = value.strip()
    return name, headers


@dataclass
class SessionResult:
    variables: dict[str, str] = field(default_factory=dict)  # SET VARIABLE in order (last wins)
    set_order: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    execs: list[tuple[str, str]] = field(default_factory=list)
    device_queries: list[str] = field(default_factory=list)
    closed_by_server: bool = False
    seconds: float = 0.0

    def user_events(self) -> list[tuple[str, dict[str, str]]]:
        return [parse_user_event(data) for app, data in self.execs if app == "UserEvent"]

    def route_event(self) -> dict[str, str] | None:
        events = [headers for name, headers in self.user_events() if name == "AstertrackRoute"]
        return events[-1] if events else None


class FakeAsterisk:
    """Plays Asterisk's side of AGI sessions against a server at (host, port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4573, default_device_state: str = "NOT_INUSE"):
        self.host = host
        self.port = port
        self.default_device_state = default_device_state

    @staticmethod
    def environment(recording: Recording | None = None, overrides: dict[str, str | None] | None = None,
                    script: str | None = None, args: list[str] | None = None) -> list[tuple[str, str]]:
        env = list(recording.env) if recording else []
        values = dict(env)
        for key, value in (overrides or {}).items():
            values[key] = value
        if script is not None:
            values["agi_network_script"] = script
            values["agi_request"] = f"agi://127.0.0.1:4573/{script}"
        for key in [k for k in values if k.startswith("agi_arg_")]:
            if args is not None:
                del values[key]
        for index, arg in enumerate(args or [], start=1):
            values[f"agi_arg_{index}"] = arg
        ordered = [(k, values[k]) for k, _ in env if k in values and values[k] is not None]
        ordered += [(k, v) for k, v in values.items() if k not in dict(env) and v is not None]
        return ordered

    @staticmethod
    def encode_environment(env: list[tuple[str, str]]) -> bytes:
        return b"".join(f"{k}: {v}\n".encode() for k, v in env) + b"\n"

    async def session(self, env: list[tuple[str, str]] | bytes, variables: dict[str, str] | None = None,
                      device_states: dict[str, str] | None = None, hangup_after: int | None = None,
                      hangup_line_at: int | None = None, timeout: float = 10.0, hook=None) -> SessionResult:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**20)
        try:
            return await asyncio.wait_for(
                self.converse(reader, writer, env, variables, device_states, hangup_after, hangup_line_at, hook),
                timeout)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def converse(self, reader, writer, env, variables=None, device_states=None, hangup_after=None,
                       hangup_line_at=None, hook=None) -> SessionResult:
        """Send the environment, then answer commands until the server closes the session.

        ``hangup_after=N``: close our side after N commands (a caller who hung up and an
        Asterisk that dropped the socket).  ``hangup_line_at=N``: send the inline ``HANGUP``
        line before the reply to command N, as Asterisk does when the caller hangs up.
        ``hook(n, line)``: awaited before replying to command n (to hold a call in flight).
        """
        started = time.perf_counter()
        channel = dict(variables or {})
        states = dict(device_states or {})
        result = SessionResult()
        writer.write(env if isinstance(env, bytes) else self.encode_environment(env))
        await writer.drain()
        while True:
            try:
                raw = await reader.readline()
            except (ConnectionError, OSError):
                break
            if not raw:
                result.closed_by_server = True
                break
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            result.commands.append(line)
            if hangup_after is not None and len(result.commands) > hangup_after:
                break
            if hook is not None:
                await hook(len(result.commands), line)
            reply = self.answer(line, channel, states, result)
            if hangup_line_at is not None and len(result.commands) >= hangup_line_at:
                reply = "HANGUP\n" + ("200 result=-1" if line.startswith(("EXEC", "STREAM")) else reply)
            writer.write(reply.encode() + b"\n")
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                break
        result.seconds = time.perf_counter() - started
        return result

    def answer(self, line: str, channel: dict[str, str], states: dict[str, str], result: SessionResult) -> str:
        parts = split_args(line)
        upper = [p.upper() for p in parts[:3]]
        if upper[:2] == ["SET", "VARIABLE"] and len(parts) >= 3:
            value = parts[3] if len(parts) > 3 else ""
            channel[parts[2]] = value
            result.variables[parts[2]] = value
            result.set_order.append(parts[2])
            return "200 result=1"
        if upper[:2] == ["GET", "VARIABLE"] and len(parts) >= 3:
            value = channel.get(parts[2])
            return "200 result=0" if value is None else f"200 result=1 ({value})"
        if upper[:3] == ["GET", "FULL", "VARIABLE"] and len(parts) >= 4:
            expression = parts[3]
            if _DEVICE_STATE.search(expression):
                # Asterisk substitutes every ${...} of the expression: several devices in one command
                # come back comma-separated, in the order asked.
                def device_state(match: re.Match) -> str:
                    result.device_queries.append(match.group(1))
                    return states.get(match.group(1), self.default_device_state)

                return f"200 result=1 ({_DEVICE_STATE.sub(device_state, expression)})"
            var = _VAR_EXPR.match(expression)
            value = channel.get(var.group(1)) if var else None
            return "200 result=0" if value is None else f"200 result=1 ({value})"
        if upper[:1] == ["EXEC"] and len(parts) >= 2:
            data = parts[2] if len(parts) > 2 else ""
            result.execs.append((parts[1], data))
            if parts[1].upper() == "MSET":
                for name, value in mset_pairs(data):
                    channel[name] = value
                    result.variables[name] = value
                    result.set_order.append(name)
            return "200 result=0"
        if upper[:1] in (["VERBOSE"], ["NOOP"]):
            return "200 result=1"
        return "510 Invalid or unknown command"


def run(coro):
    return asyncio.run(coro)
