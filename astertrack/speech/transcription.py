"""Transcription worker: kept recordings of answered calls -> ``Transcript`` rows, on our own server.

No speech model ships with astertrack; the engine is an external command the admin installs
(Vosk's ``vosk-transcriber``, whisper.cpp, the OpenAI whisper CLI...).  ``[transcription] command``
is a command-line template with ``{input}`` and ``{language}`` placeholders.  It is split once with
``shlex`` and the placeholders are replaced inside the resulting argv items, so a recording path is
always one literal argument and never reaches a shell.

A call the engine fails on gets ``Call.transcription_error`` and is not retried; a missing engine
is the admin's problem, not the call's, so it stops the batch without marking any call.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from astertrack.config import Config
from astertrack.db.engine import begin_write, session_scope
from astertrack.db.models import Call, Transcript
from astertrack.routing.recording import resolve_recording

log = logging.getLogger(__name__)

ERROR_LENGTH = 200  # Call.transcription_error is String(200)


class EngineMissing(RuntimeError):
    """The configured engine executable is not installed (or not executable)."""


@dataclass(frozen=True)
class Failure:
    """Why one call could not be transcribed (stored on the call so it is not retried)."""

    reason: str


def build_argv(template: str, input_path: str, language: str) -> list[str]:
    """Split the template like a shell would, then fill placeholders inside each item.

    Substituting after splitting keeps a path with spaces, quotes or ``$(...)`` one literal argv item.
    """
    try:
        argv = shlex.split(template)
    except ValueError as exc:
        raise ValueError(f"[transcription] command cannot be parsed: {exc}") from None
    if not argv:
        raise ValueError("[transcription] command is empty")
    if not any("{input}" in item for item in argv):
        raise ValueError("[transcription] command has no {input} placeholder")
    return [item.replace("{input}", input_path).replace("{language}", language) for item in argv]


def engine_name(template: str) -> str:
    """First word of the command, without its directory: stored on each transcript."""
    first = shlex.split(template)[0]
    return os.path.basename(first)[:50]


def run_engine(argv: list[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run the engine in its own process group and kill the whole group on timeout.

    ``subprocess.run`` kills only the direct child; a wrapper script's children would keep the
    output pipe open and the worker would hang past the timeout.
    """
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.communicate()
            raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


Runner = Callable[[list[str], float], subprocess.CompletedProcess]


def pending_calls(session: Session, limit: int, min_talk_seconds: float = 3.0) -> list[Call]:
    """Answered, finished calls with a kept recording, long enough, not yet transcribed or failed."""
    has_transcript = exists().where(Transcript.call_id == Call.id)
    query = (select(Call)
             .where(Call.outcome == "answered", Call.state == "finished", Call.recording_state == "kept",
                    Call.recording_path.is_not(None), Call.talk_seconds >= min_talk_seconds,
                    Call.transcription_error.is_(None), ~has_transcript)
             .order_by(Call.id)
             .limit(limit))
    return list(session.scalars(query))


def transcribe_one(call: Call, config: Config, run: Runner = run_engine) -> Transcript | Failure:
    """Run the engine on one call's recording; raises ``EngineMissing`` only for a missing engine."""
    settings = config.values["transcription"]
    template, language = settings["command"], settings["language"]
    path = resolve_recording(config.values["recordings"]["dir"], call.recording_path or "")
    if path is None:
        return Failure("recording path is outside the recordings directory")
    if not path.is_file():
        return Failure(f"recording file not found: {path.name}")
    argv = build_argv(template, str(path), language)
    try:
        result = run(argv, settings["timeout"])
    except FileNotFoundError as exc:
        raise EngineMissing(f"transcription engine not found: {argv[0]}") from exc
    except PermissionError as exc:
        raise EngineMissing(f"transcription engine is not executable: {argv[0]}") from exc
    except subprocess.TimeoutExpired:
        return Failure(f"engine timed out after {settings['timeout']} s")
    if result.returncode != 0:
        detail = (result.stderr or b"").decode("utf-8", errors="replace").strip().splitlines()
        tail = detail[-1] if detail else ""
        return Failure(f"engine exited with {result.returncode}: {tail}"[:ERROR_LENGTH])
    text = (result.stdout or b"").decode("utf-8", errors="replace").strip()
    return Transcript(call_id=call.id, language=language[:10], text=text, engine=engine_name(template))


def run_batch(session_factory: sessionmaker[Session], config: Config, limit: int = 20,
              run: Runner = run_engine) -> dict[str, int]:
    """Transcribe up to ``limit`` pending calls; one call's failure never stops the others.

    The engine may run for minutes, so no transaction is held open while it works.
    """
    settings = config.values["transcription"]
    if not settings["command"]:
        raise ValueError("[transcription] command is empty: transcription is off")
    build_argv(settings["command"], "x", settings["language"])  # fail fast on a broken template
    counts = {"pending": 0, "transcribed": 0, "failed": 0, "skipped": 0}
    with session_scope(session_factory) as session:
        calls = pending_calls(session, limit, settings["min_talk_seconds"])
        session.expunge_all()
    counts["pending"] = len(calls)
    for call in calls:
        try:
            outcome = transcribe_one(call, config, run)
        except EngineMissing as exc:
            log.error("call %s: %s; stopping the batch (no call marked)", call.id, exc)
            counts["engine_missing"] = 1
            break
        try:
            _store(session_factory, call.id, outcome)
        except IntegrityError:  # another worker stored this call's transcript first
            log.info("call %s: already transcribed by another worker", call.id)
            counts["skipped"] += 1
            continue
        if isinstance(outcome, Failure):
            log.warning("call %s: transcription failed: %s", call.id, outcome.reason)
            counts["failed"] += 1
        else:
            log.info("call %s: transcribed, %d characters", call.id, len(outcome.text))
            counts["transcribed"] += 1
    return counts


def _store(session_factory: sessionmaker[Session], call_id: int, outcome: Transcript | Failure) -> None:
    with session_scope(session_factory) as session:
        begin_write(session)
        if isinstance(outcome, Failure):
            call = session.get(Call, call_id)
            if call is not None:
                call.transcription_error = outcome.reason[:ERROR_LENGTH]
        else:
            session.add(outcome)
