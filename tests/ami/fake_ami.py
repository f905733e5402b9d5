"""A loopback fake Asterisk AMI server that replays recorded streams (tests and the benchmark).

Behaves like Asterisk where the listener can tell: sends the banner, answers ``Login`` (a wrong
secret gets ``Response: Error`` after a pause and the session is closed, as main/manager.c does),
answers ``Ping`` and ``CoreShowChannels``, then streams the recorded bytes.  Each TCP connection
plays the next ``Session`` of the script, so a test can cut a call in the middle, drop the
connection and continue on the reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BANNER = b"Asterisk Call Manager/9.0.0\r\n"


def capture_body(path: Path) -> bytes:
    """The recorded stream without its banner and the recorder's own login response."""
    data = path.read_bytes()
    assert data.startswith(b"Asterisk Call Manager/")
    data = data.split(b"\r\n", 1)[1]
    first, rest = data.split(b"\r\n\r\n", 1)
    assert b"Response: Success" in first  # the recorder's login (capture-login, call-py-1)
    return rest


def split_blocks(body: bytes) -> list[bytes]:
    return [b + b"\r\n\r\n" for b in body.split(b"\r\n\r\n") if b.strip()]


def alive_channels(stream: bytes) -> list[dict[str, str]]:
    """Channels created and not hung up in ``stream``: what CoreShowChannels would list."""
    alive: dict[str, dict[str, str]] = {}
    for block in stream.split(b"\r\n\r\n"):
        headers: dict[str, str] = {}
        for line in block.decode("utf-8", "replace").split("\r\n"):
            key, sep, value = line.partition(": ")
            if sep and key not in headers:
                headers[key] = value
        name = headers.get("Event")
        uid = headers.get("Uniqueid")
        if not uid:
            continue
        if name == "Newchannel":
            alive[uid] = headers
        elif name == "Hangup":
            alive.pop(uid, None)
        elif uid in alive:
            for key in ("ChannelStateDesc", "ChannelState", "Linkedid", "Channel"):
                if key in headers:
                    alive[uid][key] = headers[key]
            if name == "BridgeEnter":
                alive[uid]["BridgeId"] = headers.get("BridgeUniqueid", "")
            elif name == "BridgeLeave":
                alive[uid]["BridgeId"] = ""
    return list(alive.values())


@dataclass
class Session:
    """What one TCP connection plays after a successful login."""

    stream: bytes = b""
    live_channels: list[dict[str, str]] = field(default_factory=list)
    chunk_size: int = 0  # 0: one write; else split the stream into writes of this size
    close_after: bool = False  # drop the connection once the stream is sent
    wait_for_resync: bool = True  # stream only after answering CoreShowChannels
    gated: list[bytes] = field(default_factory=list)  # each part waits for ``FakeAmiServer.proceed()``


class FakeAmiServer:
    def __init__(self, sessions: list[Session], *, username: str = "astertrack", secret: str = "s3cret",
                 refuse_delay: float = 0.2, answer_pings: bool = True,
                 originate: Callable[[dict[str, str]], bytes] | None = None):
        self.sessions = list(sessions)
        self.username = username
        self.secret = secret
        self.refuse_delay = refuse_delay
        self.answer_pings = answer_pings
        # Originate: queued, then the events this returns (what Asterisk would stream for that call)
        self.originate = originate
        self.connections = 0
        self.logins = 0
        self.failed_logins = 0
        self.actions: list[dict[str, str]] = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.all_sent = asyncio.Event()
        self.parts_sent = 0
        self.part_sent_at: list[float] = []
        self._gate = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    def proceed(self) -> None:
        """Let the next gated part of the current session go."""
        self._gate.set()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _read_action(self, reader: asyncio.StreamReader) -> dict[str, str] | None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        action: dict[str, str] = {}
        for line in raw.decode().split("\r\n"):
            key, sep, value = line.partition(": ")
            if sep and key == "Variable" and key in action:  # repeated header (Originate variables)
                action[key] += "\n" + value
            elif sep:
                action[key] = value
        self.actions.append(action)
        return action

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        writer.write(BANNER)
        try:
            action = await self._read_action(reader)
            if action is None or action.get("Action", "").lower() != "login":
                return
            aid = action.get("ActionID", "")
            if action.get("Username") != self.username or action.get("Secret") != self.secret:
                self.failed_logins += 1
                await asyncio.sleep(self.refuse_delay)
                writer.write(f"Response: Error\r\nActionID: {aid}\r\nMessage: Authentication failed\r\n\r\n".encode())
                await writer.drain()
                return
            self.logins += 1
            session = self.sessions.pop(0) if self.sessions else Session()
            writer.write(f"Response: Success\r\nActionID: {aid}\r\nMessage: Authentication accepted\r\n\r\n"
                         .encode())
            writer.write(b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")
            await writer.drain()
            resynced = asyncio.Event()
            actions = asyncio.create_task(self._answer_actions(reader, writer, session, resynced))
            if session.wait_for_resync:
                await asyncio.wait_for(resynced.wait(), 10)
            await self._stream(writer, session)
            if not self.sessions:
                self.all_sent.set()
            if session.close_after:
                actions.cancel()
                return
            await actions
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _stream(self, writer: asyncio.StreamWriter, session: Session) -> None:
        data = session.stream
        if not session.chunk_size:
            writer.write(data)
        else:
            for start in range(0, len(data), session.chunk_size):
                writer.write(data[start:start + session.chunk_size])
                await writer.drain()
        await writer.drain()
        self.parts_sent += 1
        self.part_sent_at.append(time.monotonic())
        for part in session.gated:
            await self._gate.wait()
            self._gate.clear()
            writer.write(part)
            await writer.drain()
            self.parts_sent += 1
            self.part_sent_at.append(time.monotonic())

    async def _answer_actions(self, reader, writer, session: Session, resynced: asyncio.Event) -> None:
        while True:
            action = await self._read_action(reader)
            if action is None:
                return
            name = action.get("Action", "").lower()
            aid = action.get("ActionID", "")
            if name == "ping":
                if self.answer_pings:
                    writer.write(f"Response: Success\r\nActionID: {aid}\r\nPing: Pong\r\n\r\n".encode())
            elif name == "originate" and self.originate is not None:
                writer.write(f"Response: Success\r\nActionID: {aid}\r\nMessage: Originate successfully queued\r\n\r\n"
                             .encode())
                writer.write(self.originate(action))
            elif name == "coreshowchannels":
                out = [f"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n"
                       f"Message: Channels will follow\r\n\r\n"]
                for ch in session.live_channels:
                    lines = ["Event: CoreShowChannel", f"ActionID: {aid}"]
                    lines += [f"{k}: {v}" for k, v in ch.items() if k not in ("Event", "ActionID", "Privilege", "Timestamp")]
                    out.append("\r\n".join(lines) + "\r\n\r\n")
                out.append(f"Event: CoreShowChannelsComplete\r\nActionID: {aid}\r\nEventList: Complete\r\n"
                           f"ListItems: {len(session.live_channels)}\r\n\r\n")
                writer.write("".join(out).encode())
                resynced.set()
            else:
                writer.write(f"Response: Error\r\nActionID: {aid}\r\nMessage: Invalid/unknown command\r\n\r\n"
                             .encode())
            await writer.drain()
