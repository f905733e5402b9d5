"""The AGI wire protocol on asyncio streams: environment block, commands, result codes.

Used for FastAGI (a TCP connection from Asterisk) and for classic AGI (stdin/stdout of a
process Asterisk started); nothing here knows which.  Bytes in, bytes out:

* the environment is ``agi_name: value`` lines up to a blank line; ``agi_arg_N`` are the
  route arguments.  Lines are capped (``MAX_LINE``) and so is their number (``MAX_HEADERS``);
  undecodable bytes are replaced, never fatal.  Asterisk writes values raw, so a line break
  in a caller name adds header lines: of repeated headers the copy in Asterisk's place counts
  (see :meth:`AGIChannel.read_environment`).
* a command is one line; arguments are quoted with ``"`` and ``\\`` escaped, and line
  breaks removed, so a value can never start a second command.
* replies: ``200 result=N [(data)]``, ``510`` invalid command, ``511`` dead channel,
  ``520-`` multi-line usage ending ``520 End of proper usage.``; a bare ``HANGUP`` line can
  arrive before any reply when the caller hangs up (unless ``AGISIGHUP=no``).  Errors are
  typed exceptions.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

MAX_LINE = 8192
MAX_HEADERS = 256
READ_CHUNK = 65536
# ``EXEC MSet a=1,b=2`` sets many variables in one round trip instead of one SET VARIABLE
# each.  Asterisk splits MSet's argument on commas outside quotes, parentheses and
# brackets (``__ast_app_separate_args``; backslashes escape), and EXEC substitutes
# ``${...}`` first, so only values without quotes, backslashes, ``$``, braces, commas or
# ``=``, and with every ``(`` and ``[`` closed, ride along; the rest go one by one.  A
# name may be a dialplan function with a plain argument (``CALLERID(name)``): MSet writes
# it like Set does.  Asterisk reads a command into a 2 KB buffer, and older versions' MSet
# takes at most 24 pairs: long lists go in a few MSets.
_MSET_UNSAFE = re.compile(r'[,|"\\${}=\x00-\x1f\x7f]')
_MSET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,79}(?:\([A-Za-z0-9_-]{1,40}\))?$")
MSET_MAX_LINE = 1500
MSET_MAX_PAIRS = 24
_RESULT = re.compile(r"^200 result=(-?\d+)(?:\s+(.*))?$")
# The order Asterisk writes the environment in (res_agi.c: launch_netscript, then setup_env):
# the FastAGI preamble, the channel's fields with the caller id in the middle, the arguments.
_PREAMBLE = frozenset({"agi_network", "agi_network_script"})
_ARGUMENT = "agi_arg_"
# setup_env's fields after agi_callerid; those before it (agi_request ... agi_callerid) and any
# name Asterisk does not write keep their first copy.
_AFTER_CALLER_ID = frozenset({
    "agi_calleridname", "agi_callingpres", "agi_callingani2", "agi_callington", "agi_callingtns",
    "agi_dnid", "agi_rdnis", "agi_context", "agi_extension", "agi_priority", "agi_enhanced",
    "agi_accountcode", "agi_threadid",
})


class AGIError(Exception):
    """Base of every AGI failure."""


class AGIProtocolError(AGIError):
    """The peer sent something that is not AGI (too long, too many headers, garbage)."""


class AGIHeaderTooLong(AGIProtocolError):
    pass


class AGIConnectionClosed(AGIError):
    """The peer went away (EOF) before the exchange was complete."""


class AGIHangup(AGIError):
    """The channel hung up (``HANGUP`` line, ``result=-1`` on some commands, or 511)."""


class AGIInvalidCommand(AGIError):
    """510: Asterisk does not know the command."""


class AGIUsageError(AGIError):
    """520: the command's syntax was wrong; ``usage`` holds Asterisk's help text."""

    def __init__(self, message: str, usage: str = ""):
        super().__init__(message)
        self.usage = usage


class AGIDeadChannel(AGIHangup):
    """511: command not permitted on a dead channel."""


class AGIAppError(AGIError):
    """``result=-1``: the command or application failed."""


@dataclass(frozen=True)
class AGIResult:
    code: int
    result: int
    data: str | None = None  # text inside the parentheses, when present
    extra: str = ""  # anything after the parentheses (e.g. ``endpos=1234``)


@dataclass
class AGIEnvironment:
    headers: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what was wrong with the block, if anything

    def get(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    @property
    def script(self) -> str:
        """Route name: ``agi_network_script`` (FastAGI) or the first argument (classic AGI)."""
        return self.headers.get("agi_network_script", "").split("?", 1)[0].strip().strip("/")


def quote(value: object) -> str:
    """One AGI argument: ``"`` and ``\\`` escaped, CR/LF removed (they would end the command)."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def parse_result(line: str) -> AGIResult:
    """Parse a ``200 result=...`` line (other codes are handled by :meth:`AGIChannel.command`)."""
    match = _RESULT.match(line)
    if not match:
        raise AGIProtocolError(f"unexpected reply: {line[:200]!r}")
    result = int(match.group(1))
    rest = (match.group(2) or "").strip()
    data = None
    extra = rest
    if rest.startswith("("):
        close = rest.rfind(")")
        if close > 0:
            data = rest[1:close]
            extra = rest[close + 1:].strip()
    return AGIResult(200, result, data, extra)


def brackets_closed(text: str) -> bool:
    """Every ``(`` and ``[`` closed, counted the way Asterisk's split counts them (a closer
    with nothing open is ignored): then a comma after the value still splits."""
    if "(" not in text and "[" not in text:
        return True  # the usual value: nothing can be left open
    depth = {"(": 0, "[": 0}
    for ch in text:
        if ch in depth:
            depth[ch] += 1
        elif ch == ")":
            depth["("] = max(0, depth["("] - 1)
        elif ch == "]":
            depth["["] = max(0, depth["["] - 1)
    return not any(depth.values())


def _batchable(name: str, text: str) -> bool:
    return bool(_MSET_NAME.match(name)) and not _MSET_UNSAFE.search(text) and brackets_closed(text)


def _mset_chunks(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Pairs grouped so that each ``EXEC MSet "..."`` line stays under MSET_MAX_LINE."""
    chunks: list[list[tuple[str, str]]] = []
    size = MSET_MAX_LINE
    for name, text in pairs:
        cost = len(name) + len(text.encode()) + 2
        if size + cost > MSET_MAX_LINE or len(chunks[-1]) >= MSET_MAX_PAIRS:
            chunks.append([])
            size = len('EXEC MSet ""')
        chunks[-1].append((name, text))
        size += cost
    return chunks


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r\n")


def _assemble(lines: list[tuple[str, str]], problems: list[str]) -> AGIEnvironment:
    """The environment from its header lines, in the order received.

    Asterisk writes every header once, in a fixed order, and writes the values raw: a caller
    name ``x\\nagi_extension: 74950000999`` arrives as one more ``agi_extension`` line
    right after ``agi_calleridname``, so *after* the real copies of the headers Asterisk
    writes before the name and *before* the real copies of those it writes after it.  The
    copy that counts is the one in Asterisk's place:

    * ``agi_network`` and ``agi_network_script`` only in the leading lines (Asterisk writes
      them first, for FastAGI only; classic AGI has none, so a smuggled one there would be the
      only one);
    * ``agi_arg_N`` only in the run of arguments that ends the block (Asterisk writes them
      last), the first copy of each; ``args`` is ``agi_arg_1``, ``agi_arg_2``... up to the
      first missing one;
    * the headers up to ``agi_callerid`` (and names Asterisk does not write): the first copy;
    * the headers after ``agi_callerid`` (``agi_calleridname`` ... ``agi_threadid``): the last.

    Either way the session goes on, routed on what Asterisk sent, and the other copies go to
    ``problems`` (the app logs them): refusing the block would send a real call with a hostile
    caller name to the fallback.  The one place this cannot tell is a line smuggled in an
    argument's value (after every real header but the later arguments); the shipped dialplan
    passes the DID and then Asterisk's own linkedid or DIALSTATUS, never caller text, last.
    """
    env = AGIEnvironment(problems=problems)
    lead = 0
    while lead < len(lines) and lines[lead][0] in _PREAMBLE:
        lead += 1
    tail = len(lines)
    while tail > lead and lines[tail - 1][0].startswith(_ARGUMENT):
        tail -= 1
    for position, (name, value) in enumerate(lines):
        if name in _PREAMBLE and position >= lead:
            problems.append(f"{name} after the first lines, ignored: {value[:80]!r}")
        elif name.startswith(_ARGUMENT) and position < tail:
            problems.append(f"{name} before other headers, ignored: {value[:80]!r}")
        elif name not in env.headers:
            env.headers[name] = value
        elif name in _AFTER_CALLER_ID:
            problems.append(f"repeated {name}, earlier copy ignored: {env.headers[name][:80]!r}")
            env.headers[name] = value
        else:
            problems.append(f"repeated {name}, later copy ignored: {value[:80]!r}")
    index = 1
    while f"{_ARGUMENT}{index}" in env.headers:
        env.args.append(env.headers[f"{_ARGUMENT}{index}"])
        index += 1
    return env


class AGIChannel:
    """One AGI session over a reader/writer pair (asyncio streams or adapters with the same API)."""

    def __init__(self, reader: asyncio.StreamReader, writer, *, max_line: int = MAX_LINE,
                 max_headers: int = MAX_HEADERS):
        self.reader = reader
        self.writer = writer
        self.max_line = max_line
        self.max_headers = max_headers
        self.hung_up = False
        self.sent: list[str] = []  # commands sent, for logs and tests
        # Our own line buffer over ``reader.read``: the environment's two dozen lines arrive
        # in one segment and are split here, instead of one ``readuntil`` wake-up per line.
        self._buffer = bytearray()
        self._eof = False

    async def _readline(self) -> bytes:
        """One line; an over-long line is consumed entirely and then reported."""
        too_long = False
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                raw = bytes(self._buffer[:end + 1])
                del self._buffer[:end + 1]
                if too_long or len(raw) > self.max_line:
                    raise AGIHeaderTooLong(f"line longer than {self.max_line} bytes")
                return raw
            if len(self._buffer) > self.max_line:
                self._buffer.clear()  # already too long: drop it and keep skipping to the newline
                too_long = True
            if self._eof:
                raise AGIConnectionClosed("end of stream")
            try:
                chunk = await self.reader.read(READ_CHUNK)
            except ConnectionError as exc:
                raise AGIConnectionClosed(str(exc)) from None
            if not chunk:
                self._eof = True
            self._buffer += chunk

    def end(self) -> None:
        """Close our side: for Asterisk the AGI is over and the dialplan goes on (idempotent;
        a writer without ``close``, such as the script's stdout, ends with the process)."""
        close = getattr(self.writer, "close", None)
        if close is not None:
            close()

    async def read_environment(self) -> AGIEnvironment:
        """Read ``agi_*`` lines up to the blank line.

        A line that is not a header is noted in ``problems`` and skipped; an over-long line
        (read to its end, then to the blank line) or too many lines raise AGIProtocolError:
        such a block is not from Asterisk and nothing in it should be trusted.  A header
        that repeats or stands where Asterisk never writes it is settled by
        :func:`_assemble` and noted in ``problems`` too.
        """
        lines: list[tuple[str, str]] = []
        problems: list[str] = []
        count = 0
        failure: AGIProtocolError | None = None
        while True:
            # Past a failure keep reading (and dropping) to the blank line, so the failure
            # variables we send next are read as commands; the caller's timeout bounds this.
            try:
                raw = await self._readline()
            except AGIHeaderTooLong as exc:
                failure = failure or exc
                continue
            line = _decode(raw)
            if line == "":
                break
            count += 1
            if count > self.max_headers:
                failure = failure or AGIProtocolError(f"more than {self.max_headers} environment lines")
            if failure is not None:
                continue
            name, sep, value = line.partition(":")
            name = name.strip()
            if not sep or not name.startswith("agi_"):
                problems.append(f"not an agi_ header: {line[:80]!r}")
                continue
            lines.append((name, value[1:] if value.startswith(" ") else value))
        if failure is not None:
            raise failure
        return _assemble(lines, problems)

    async def command(self, line: str) -> AGIResult:
        """Send one command, return its 200 result; raise a typed error otherwise."""
        if "\n" in line or "\r" in line:
            raise ValueError("an AGI command is one line")
        if self.hung_up:
            raise AGIHangup("channel already hung up")
        self.sent.append(line)
        self.writer.write(line.encode("utf-8") + b"\n")
        try:
            await self.writer.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise AGIConnectionClosed(str(exc)) from None
        while True:
            reply = _decode(await self._readline())
            if reply.strip() == "HANGUP":
                # Inline notice; the command's own reply follows.
                self.hung_up = True
                continue
            break
        if reply.startswith("200"):
            result = parse_result(reply)
            if result.result == -1:
                if self.hung_up:
                    raise AGIHangup(f"{line.split(' ', 1)[0]}: channel hung up")
                raise AGIAppError(f"{line[:80]}: result=-1")
            return result
        if reply.startswith("510"):
            raise AGIInvalidCommand(f"{line[:80]}: {reply}")
        if reply.startswith("511"):
            self.hung_up = True
            raise AGIDeadChannel(f"{line[:80]}: {reply}")
        if reply.startswith("520"):
            usage = []
            if reply.startswith("520-"):
                for _ in range(self.max_headers):
                    more = _decode(await self._readline())
                    if more.startswith("520 "):
                        break
                    usage.append(more)
            raise AGIUsageError(f"{line[:80]}: {reply}", "\n".join(usage))
        raise AGIProtocolError(f"unexpected reply to {line[:80]!r}: {reply[:200]!r}")

    # -- the commands the routes use (pyst2's vocabulary)

    async def get_variable(self, name: str) -> str | None:
        """Value of a channel variable or function, None when unset."""
        result = await self.command(f"GET VARIABLE {name}")
        return result.data if result.result == 1 else None

    async def get_full_variable(self, expression: str) -> str | None:
        """Evaluate an expression such as ``${DEVICE_STATE(PJSIP/101)}``."""
        result = await self.command(f"GET FULL VARIABLE {expression}")
        return result.data if result.result == 1 else None

    async def set_variable(self, name: str, value: object) -> None:
        await self.command(f"SET VARIABLE {name} {quote(value)}")

    async def set_variables(self, pairs: list[tuple[str, object]]) -> None:
        """Set every pair, the last one last (it can be a "done" flag), in few round trips.

        Plain names with values MSet passes through unchanged go in ``EXEC MSet``; any
        other pair gets its own ``SET VARIABLE``, before the batch.  An Asterisk without
        MSet (``result=-2``: no such application) gets every pair one by one.
        """
        if not pairs:
            return
        *rest, last = [(name, str(value)) for name, value in pairs]
        batch = []
        for name, text in rest:
            if _batchable(name, text):
                batch.append((name, text))
            else:
                await self.set_variable(name, text)
        last_alone = not _batchable(*last)
        if not last_alone:
            batch.append(last)
        for chunk in _mset_chunks(batch):
            result = await self.exec_app("MSet", ",".join(f"{name}={text}" for name, text in chunk))
            if result.result == -2:
                for name, text in chunk:
                    await self.set_variable(name, text)
        if last_alone:
            await self.set_variable(*last)

    async def exec_app(self, application: str, data: str = "") -> AGIResult:
        return await self.command(f"EXEC {application} {quote(data)}")

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.command(f"VERBOSE {quote(message)} {int(level)}")
