"""Start our daemons as real processes, wait until they answer, and always stop them again.

For the tests, benchmarks and lab checks that drive ``astertrack-agi``, ``astertrack-ami`` or a
gunicorn tracker from outside: each of them needs a free port, a wait that gives up as soon
as the process has died (with its log, not a bare timeout), and a stop that never leaves a
daemon holding a port or a database after a failure.  :func:`asgi_in_thread` is the in-process
counterpart for tests of the event worker's serving: uvicorn in a thread, stopped the same way.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from astertrack.ops.serving import DeadlineH11Protocol

BIN = Path(sys.executable).parent  # where this environment's console scripts are


class NotReady(RuntimeError):
    """The process died, or did not answer in time."""


def free_port() -> int:
    """A loopback port nobody listens on now (the OS picks it, so parallel runs do not collide)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(args: list[str], **popen_kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` in a session (and process group) of its own, for :func:`stop_process`.

    Everything the process forks (pre-forked workers, a shell's children) stays in its group, so
    stopping the group leaves nothing behind, even when the leader died first and its children
    were re-parented to PID 1.  A Ctrl-C reaches only the caller, whose cleanup stops the group.
    """
    proc = subprocess.Popen(args, start_new_session=True, **popen_kwargs)
    proc.leads_own_group = True  # known even after it has been reaped
    return proc


@contextlib.contextmanager
def running(args: list[str], timeout: float = 30.0, **popen_kwargs) -> Iterator[subprocess.Popen]:
    """A :func:`spawn`-ed process whose whole group is stopped on leaving the block, whatever happens."""
    proc = spawn(args, **popen_kwargs)
    try:
        yield proc
    finally:
        stop_process(proc, timeout)


@contextlib.contextmanager
def asgi_in_thread(asgi: Any, *, lifespan: str = "on", graceful: float | None = 10.0,
                   ) -> Iterator[tuple[uvicorn.Server, int, threading.Thread]]:
    """(server, port, thread): ``asgi`` served by uvicorn with the event worker's own protocol on a
    loopback port, in a thread, until the block ends (streams still open get ``graceful`` seconds)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(asgi, http=DeadlineH11Protocol, lifespan=lifespan, proxy_headers=False,
                                           log_level="warning", timeout_graceful_shutdown=graceful))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        if not server.started:
            raise NotReady("uvicorn did not start in a thread within 10 s")
        yield server, sock.getsockname()[1], thread
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def start_daemon(command: str, config: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    """One of our console scripts on ``config``, as a service manager starts it.

    Its output goes to ``log``, or else to a text pipe that :func:`stop_process` returns.  It
    runs in its own session (:func:`spawn`): stopping it stops its workers too.
    """
    output = log.open("wb") if log is not None else subprocess.PIPE
    try:
        return spawn([str(BIN / command), "-c", str(config), *args], stdout=output,
                     stderr=subprocess.STDOUT, text=log is None,
                     env={**os.environ, "ASTERTRACK_CONFIG": str(config)})
    finally:
        if log is not None:
            output.close()  # the child has its own copy


def _died(proc: subprocess.Popen | None, name: str, log: Path | None) -> None:
    """Raise with the end of its output if ``proc`` has exited: why it died is the first question."""
    if proc is None or proc.poll() is None:
        return
    if log is not None:
        output = log.read_text(errors="replace")
    else:
        output = proc.stdout.read() if proc.stdout else ""
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
    raise NotReady(f"{name} exited with {proc.returncode}:\n{output[-2000:]}")


def _give_up(proc: subprocess.Popen | None) -> None:
    """A process that never came up is of no use, and must not outlive the run that started it."""
    if proc is not None:
        stop_process(proc)


def wait_for_port(port: int, proc: subprocess.Popen | None = None, *, name: str = "the server",
                  log: Path | None = None, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    """Return once ``host:port`` accepts connections; raise :class:`NotReady` if ``proc`` dies first
    (or is stopped, if it never does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            _died(proc, name, log)
            time.sleep(0.05)
    _give_up(proc)
    raise NotReady(f"{name} did not listen on {host}:{port} within {timeout:g} s")


def wait_for_http(url: str, proc: subprocess.Popen | None = None, *, name: str | None = None,
                  log: Path | None = None, timeout: float = 30.0) -> None:
    """Return once a GET of ``url`` succeeds (2xx); raise :class:`NotReady` if ``proc`` dies first
    (or is stopped, if it never answers).

    A port that accepts is not enough for a web app: gunicorn binds before its workers can answer.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _died(proc, name or url, log)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
    _give_up(proc)
    raise NotReady(f"{name or url} did not answer within {timeout:g} s")


def stop_process(proc: subprocess.Popen, timeout: float = 30.0, *, group: bool | None = None) -> str:
    """SIGTERM, wait up to ``timeout``, then SIGKILL: whatever state the process is in, it is gone after.

    A process that leads its own process group (started by :func:`spawn`, or with
    ``start_new_session``) is stopped with its whole group, so gunicorn's or the FastAGI
    server's workers go too, even when the leader has already died; ``group`` forces the
    choice.  Returns what the process wrote to a stdout pipe, for a failure message ("" when
    its output went elsewhere).
    """
    if group is None:
        group = _leads_its_group(proc)

    def send(signum: int) -> None:
        try:
            if group:
                os.killpg(proc.pid, signum)
            else:
                proc.send_signal(signum)
        except ProcessLookupError:
            pass

    if group or proc.poll() is None:
        send(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        try:
            proc.wait(timeout)
            while group and _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)  # the leader is gone; its workers may still be finishing
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is None or (group and _group_alive(proc.pid)):
            send(signal.SIGKILL)
            proc.wait(timeout)
            while group and _group_alive(proc.pid) and time.monotonic() < deadline + timeout:
                time.sleep(0.05)
    return proc.stdout.read() if proc.stdout and not proc.stdout.closed else ""


def _leads_its_group(proc: subprocess.Popen) -> bool:
    """True when ``proc`` was started as the leader of a process group of its own.

    Asked while the process is still ours (running, or a zombie not yet reaped), its group id
    says so; once reaped, its id may belong to someone else, so only :func:`spawn`'s mark counts.
    """
    if getattr(proc, "leads_own_group", False):
        return True
    if proc.returncode is None:
        try:
            return os.getpgid(proc.pid) == proc.pid
        except ProcessLookupError:
            pass
    return False


def _group_alive(pgid: int) -> bool:
    """Does any process of group ``pgid`` still run?  (Zombies waiting for their parent do not count.)"""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@contextlib.contextmanager
def throwaway_postgres(admin_url: str, prefix: str = "astertrack_bench") -> Iterator[str]:
    """A fresh PostgreSQL database for a benchmark or a lab check, dropped afterwards whatever
    happens (its connections ended first); yields its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
