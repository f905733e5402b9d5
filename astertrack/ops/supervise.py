"""Start the astertrack processes side by side for a single box or a trial (``astertrack run``).

Production uses one systemd unit per process; this is the foreground equivalent: it starts
each child with the same configuration, prefixes their output, stops them all on Ctrl-C or
SIGTERM, and keeps the others running when one exits (the AMI listener may have no Asterisk
to talk to on a trial box).
"""

from __future__ import annotations

import os
import signal
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
    process: subprocess.Popen | None = field(default=None, repr=False)


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
                    sys.stdout.write(f"[{child.name}] exited with status {code}\n")
            if not running:
                return 1
            time.sleep(poll)
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
