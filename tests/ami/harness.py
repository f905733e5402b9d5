"""Run the real listener (real TCP, real database) against the fake AMI server, then stop it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ami_listener.listener import AmiListener
from astertrack.config import Config, load_config
from astertrack.db.engine import make_engine, make_session_factory
from astertrack.db.models import Call
from tests.ami.fake_ami import FakeAmiServer
from tests.ami.fake_ami import Session as Script

NODE = "pbx-test"
SECRET = "s3cret"


def make_config(db_url: str, port: int, **ami: object) -> Config:
    values = {"host": "127.0.0.1", "port": port, "username": "astertrack", "secret": SECRET,
              "ping_interval": 5, "pong_timeout": 3, "reconnect_max_delay": 0.5, "sweep_interval": 3600,
              "metrics_port": 0}
    values.update(ami)
    return load_config(environ={}, overrides={"general": {"node": NODE}, "database": {"url": db_url},
                                              "ami": values})


@dataclass
class Run:
    listener: AmiListener
    server: FakeAmiServer
    elapsed: float


def finished_calls(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Call).where(Call.state == "finished")) or 0


def run_listener(db_url: str, scripts: list[Script], until: Callable[[Session], bool], *, timeout: float = 20.0,
                 during: Callable[[AmiListener, FakeAmiServer], object] | None = None, **ami: object) -> Run:
    """Start the fake server and the listener, wait until ``until(session)`` holds, stop, return."""
    engine = make_engine(db_url)
    factory = make_session_factory(engine)

    async def scenario() -> Run:
        server = FakeAmiServer(scripts, secret=SECRET)
        port = await server.start()
        listener = AmiListener(make_config(db_url, port, **ami), factory)
        task = asyncio.create_task(listener.run())
        started = time.monotonic()
        try:
            while True:
                if task.done():
                    task.result()
                    raise AssertionError("listener stopped on its own")
                await listener.settle()
                if during is not None:
                    during(listener, server)
                with factory() as session:
                    if until(session):
                        break
                if time.monotonic() - started > timeout:
                    raise AssertionError(f"condition not met within {timeout} s")
                await asyncio.sleep(0.05)
        finally:
            listener.stop()
            await asyncio.wait_for(task, 30)
            await server.close()
        return Run(listener, server, time.monotonic() - started)

    try:
        return asyncio.run(scenario())
    finally:
        engine.dispose()
