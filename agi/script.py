"""``astertrack-agi-script``: classic process-per-call AGI on stdin/stdout, same routes as FastAGI.

For admins who prefer ``AGI(astertrack-agi-script,inbound)`` (no daemon to run).  It speaks
the same protocol class over pipes, so it makes exactly the decisions the FastAGI server
makes; it is slower because every call pays for starting Python and opening the database.
Logs go to stderr (Asterisk shows them on its console), at WARNING unless configured lower.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from agi.app import AgiApp
from agi.protocol import MAX_LINE, AGIChannel
from astertrack.config import ConfigError, load_config


class _PipeWriter:
    """The subset of StreamWriter that AGIChannel uses, over a blocking file descriptor."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    async def drain(self) -> None:
        return None


async def serve_stdio(app: AgiApp, stdin_fd: int = 0, stdout_fd: int = 1) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE * 2)
    pipe = os.fdopen(stdin_fd, "rb", buffering=0, closefd=False)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        await app.handle(AGIChannel(reader, _PipeWriter(stdout_fd)), peer=f"pid{os.getpid()}")
    except BrokenPipeError:
        logging.getLogger("agi").info("Asterisk closed the pipe")


def main(argv=None) -> int:
    # Asterisk sends SIGHUP when the caller hangs up (AGISIGHUP); its default action would kill
    # us half-way through a database write.  The HANGUP line / EOF tells us instead.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"astertrack-agi-script: {exc}", file=sys.stderr)
        return 2
    level = config.values["general"]["log_level"]
    logging.basicConfig(level=max(logging.WARNING, logging.getLevelName(level)), stream=sys.stderr,
                        format="astertrack-agi-script %(levelname)s: %(message)s")
    app = AgiApp(config, db_workers=1, long_running=False)  # one call, then exit
    try:
        asyncio.run(serve_stdio(app))
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
