"""Start the astertrack processes side by side for a single box or a trial (``astertrack run``).

Production uses one systemd unit per process; this is the foreground equivalent: it starts
each child with the same configuration, prefixes their output and stops them all on Ctrl-C or
SIGTERM (within about a second: the web admin closes its open live streams at once on a stop).

The servers (children with a ``port``) stand or fall together: a port already taken is found
before anything starts, and a server that exits (or could not bind after all) stops the others,
with a message that names its port; a half-started set would look like it works.  The AMI
listener may have no Asterisk to talk to on a trial box: when it exits the others go on.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: tuple[str, int] | None = None  # (host, port) a server listens on
    process: subprocess.Popen | None = field(default=None, repr=False)

    def where(self) -> str:
        return f"{self.name} (port {self.port[1]} on {self.port[0]})" if self.port else self.name


def port_taken(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on now (None if it can), probed as a server binds."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
    return None


def _resolve(argv: list[str]) -> list[str]:
    """Prefer the scripts installed beside this interpreter (the venv's bin directory)."""
    local = Path(sys.executable).parent / argv[0]
    return [str(local), *argv[1:]] if local.exists() else argv


def _pump(child: Child) -> None:
    assert child.process and child.process.stdout
    for line in child.process.stdout:
        sys.stdout.write(f"[{child.name}] {line}")
        sys.stdout.flush()


def supervise(children: list[Child], config_path: str | None = None, poll: float = 0.5) -> int:
    env = dict(os.environ)
    if config_path:
        env["ASTERTRACK_CONFIG"] = config_path
    stopping = threading.Event()

    def stop(_signum, _frame):
        stopping.set()

    for child in children:
        if child.port and (why := port_taken(*child.port)):
            sys.stdout.write(f"cannot start the {child.name}: port {child.port[1]} on {child.port[0]} is {why} "
                             f"(another astertrack, or another program?); nothing was started\n")
            return 1
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for child in children:
            child.process = subprocess.Popen(_resolve(child.argv), env={**env, **child.env}, stdout=subprocess.PIPE,
                                             stderr=subprocess.STDOUT, text=True, bufsize=1)
            threading.Thread(target=_pump, args=(child,), daemon=True).start()
        reported: set[str] = set()
        while not stopping.is_set():
            running = 0
            for child in children:
                code = child.process.poll()
                if code is None:
                    running += 1
                elif child.name not in reported:
                    reported.add(child.name)
                    if child.port:
                        sys.stdout.write(f"[{child.name}] exited with status {code}: the {child.where()} is not "
                                         "serving, so the others stop too\n")
                        return 1
                    sys.stdout.write(f"[{child.name}] exited with status {code}\n")
            if not running:
                return 1
            stopping.wait(poll)
        return 0
    finally:
        for child in children:
            if child.process and child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + 10
        for child in children:
            if child.process:
                try:
                    child.process.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.process.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
