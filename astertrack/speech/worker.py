"""The speech worker: recordings -> timed words -> transcript, search index and automatic tags.

Each site runs its own engine (``SpeechSettings``, else ``[transcription] engine``/``model_path``).
Recordings are decoded in up to ``[transcription] workers`` processes; the database is only touched
here in the parent, never while an engine runs.  Per call:

- a file that is empty, silent, cut off or not audio gets a ``Transcript`` with that status and a
  sentence why, and is not tried again;
- an engine error is retried with back-off (``retry_seconds`` doubling) up to ``max_attempts``;
- a missing or broken engine/model (``EngineUnavailable``) marks no call: its calls wait for the admin,
  the error is reported to the CLI and shown on the admin's speech page.

A two-channel recording is taken as caller (left) and manager (right), MixMonitor's ``D`` layout
(docs/speech.md); each word then carries its speaker and the dictionaries can ask for one of them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session, sessionmaker

from astertrack.config import Config
from astertrack.db.engine import begin_write, session_scope
from astertrack.db.models import Call, CallSpeechTag, SpeechPhrase, SpeechSettings, Transcript
from astertrack.db.types import utcnow
from astertrack.routing.recording import resolve_recording
from astertrack.speech import audio, engines, matching, search
from astertrack.speech.engines import EngineUnavailable

log = logging.getLogger(__name__)

SPEAKERS = ("caller", "manager")  # left, right channel of a stereo recording
MISSING, RETRY, FAILED, DONE = "missing", "retry", "failed", "done"
DETAIL = 200


@dataclass(frozen=True)
class EngineSpec:
    name: str
    model_path: str
    language: str

    def describe(self) -> str:
        return f"{self.name} ({self.model_path or 'bundled model'}, {self.language})"


@dataclass(frozen=True)
class Job:
    call_id: int
    path: str
    spec: EngineSpec
    hints: tuple[str, ...] = ()


@dataclass
class Outcome:
    call_id: int
    status: str
    detail: str = ""
    words: list[dict] = field(default_factory=list)
    audio_seconds: float | None = None
    unavailable: str = ""  # EngineUnavailable's message: nothing stored for the call


def engine_for_site(session: Session, site_id: int | None, config: Config) -> EngineSpec:
    """The site's engine and model, or the configuration's default."""
    settings = config.values["transcription"]
    row = None if site_id is None else session.scalars(
        select(SpeechSettings).where(SpeechSettings.site_id == site_id)).first()
    if row is not None:
        return EngineSpec(row.engine, row.model_path or "", row.language or settings["language"])
    return EngineSpec(settings["engine"] or engines.DEFAULT_ENGINE, settings["model_path"], settings["language"])


def check_engine(spec: EngineSpec) -> str | None:
    """None when the engine and its model are there; else the sentence the admin and the CLI show."""
    try:
        engine = engines.make(spec.name, spec.model_path, spec.language)
        engine.check()
    except EngineUnavailable as exc:
        return str(exc)
    return None


def phrases_for_site(session: Session, site_id: int | None) -> list[matching.Phrase]:
    site = SpeechPhrase.site_id.is_(None) if site_id is None else or_(SpeechPhrase.site_id.is_(None),
                                                                         SpeechPhrase.site_id == site_id)
    rows = session.scalars(select(SpeechPhrase).where(site).order_by(SpeechPhrase.id)).all()
    return [matching.Phrase(r.tag, r.phrase, r.speaker or matching.ANY, r.negative) for r in rows]


def pending(session: Session, limit: int, min_talk_seconds: float, now: dt.datetime) -> list[Call]:
    """Answered, finished calls with a kept recording, not transcribed yet or due for a retry."""
    query = (select(Call).outerjoin(Transcript, Transcript.call_id == Call.id)
             .where(Call.outcome == "answered", Call.state == "finished", Call.recording_state == "kept",
                    Call.recording_path.is_not(None), Call.talk_seconds >= min_talk_seconds,
                    Call.transcription_error.is_(None),
                    or_(Transcript.id.is_(None),
                        and_(Transcript.status == RETRY, Transcript.next_attempt_at <= now)))
             .order_by(Call.id).limit(limit))
    return list(session.scalars(query))


# ---------------------------------------------------------------- in the worker processes

_ENGINES: dict[EngineSpec, engines.Engine] = {}


def transcribe_file(job: Job) -> Outcome:
    """Decode one recording; runs in a worker process, so it returns plain data and never raises."""
    path = Path(job.path)
    if not path.is_file():
        return Outcome(job.call_id, MISSING, f"recording file not found: {path.name}")
    try:
        sound = audio.load(path)
    except audio.BadAudio as exc:
        return Outcome(job.call_id, exc.status, exc.detail)
    except OSError as exc:
        return Outcome(job.call_id, RETRY, f"recording could not be read: {exc}")
    try:
        engine = _ENGINES.get(job.spec)
        if engine is None:
            engine = engines.make(job.spec.name, job.spec.model_path, job.spec.language)
            engine.load()
            _ENGINES[job.spec] = engine
        words: list[dict] = []
        stereo = len(sound.channels) == 2
        for number, pcm in enumerate(sound.channels):
            speaker = SPEAKERS[number] if stereo else None
            for w in engine.words(audio.resample(pcm, sound.rate, engine.rate), list(job.hints)):
                item = {"w": w.text, "s": w.start, "e": w.end, "sp": speaker}
                if w.spotted:
                    item["k"] = 1
                words.append(item)
    except EngineUnavailable as exc:
        return Outcome(job.call_id, RETRY, unavailable=str(exc))
    except Exception as exc:  # the engine library's own failure on this file: tried again later
        return Outcome(job.call_id, RETRY, f"engine failed: {type(exc).__name__}: {exc}"[:DETAIL])
    words.sort(key=lambda w: (w["s"], w.get("k", 0)))
    return Outcome(job.call_id, DONE, words=words, audio_seconds=round(sound.seconds, 2))


def transcript_text(words: list[dict]) -> str:
    """Heard words in time order; a new line with the speaker's name at each turn of a stereo call."""
    lines: list[str] = []
    speaker: object = object()
    for w in words:
        if w.get("k"):
            continue
        if w.get("sp") != speaker:
            speaker = w.get("sp")
            lines.append(f"{speaker}: " if speaker else "")
        lines[-1] += (" " if lines[-1] and not lines[-1].endswith(": ") else "") + w["w"]
    return "\n".join(lines)


# ---------------------------------------------------------------- the batch (parent process)

Progress = Callable[[int, int, Outcome], None]


def run_batch(session_factory: sessionmaker[Session], config: Config, limit: int = 20,
              progress: Progress | None = None, workers: int | None = None) -> dict:
    """Transcribe up to ``limit`` due calls; returns counts and the engines that are unavailable."""
    settings = config.values["transcription"]
    now = utcnow()
    counts: dict = {"pending": 0, DONE: 0, "bad_audio": 0, RETRY: 0, FAILED: 0, "engine_missing": 0}
    unavailable: dict[str, str] = {}
    with session_scope(session_factory) as session:
        calls = pending(session, limit, settings["min_talk_seconds"], now)
        jobs, specs = [], {}
        for call in calls:
            spec = specs.get(call.site_id) or engine_for_site(session, call.site_id, config)
            specs[call.site_id] = spec
            problem = check_engine(spec)
            if problem:
                unavailable[spec.describe()] = problem
                counts["engine_missing"] += 1
                continue
            path = resolve_recording(config.values["recordings"]["dir"], call.recording_path or "")
            hints = tuple(p.phrase for p in phrases_for_site(session, call.site_id))
            jobs.append(Job(call.id, str(path) if path else "", spec, hints))
    counts["pending"] = len(calls)
    by_call = {job.call_id: job for job in jobs}
    pool_size = max(1, min(workers or settings["workers"] or 1, len(jobs) or 1))
    done = 0

    def settle(outcome: Outcome) -> None:
        nonlocal done
        done += 1
        if outcome.unavailable:
            unavailable[by_call[outcome.call_id].spec.describe()] = outcome.unavailable
            counts["engine_missing"] += 1
        else:
            status = store(session_factory, outcome, config)
            key = status if status in (DONE, RETRY, FAILED) else "bad_audio"
            counts[key] += 1
            outcome.status = status
        if progress:
            progress(done, len(jobs), outcome)

    if pool_size == 1:
        for job in jobs:
            settle(transcribe_file(job))
    else:
        # fork: the children only decode audio and leave by os._exit, so the parent's database
        # connections are never closed from them; spawn would leave a resource-tracker process behind
        with ProcessPoolExecutor(pool_size, mp_context=get_context("fork")) as pool:
            for outcome in pool.map(transcribe_file, jobs):
                settle(outcome)
    counts["unavailable"] = unavailable
    return counts


def store(session_factory: sessionmaker[Session], outcome: Outcome, config: Config) -> str:
    """Write one call's transcript (or status), its search entry and its automatic tags; returns the status."""
    settings = config.values["transcription"]
    with session_scope(session_factory) as session:
        begin_write(session)
        call = session.get(Call, outcome.call_id)
        if call is None:
            return outcome.status
        row = session.scalars(select(Transcript).where(Transcript.call_id == call.id)).first()
        if row is None:
            row = Transcript(call_id=call.id, text="", attempts=0)
            session.add(row)
        spec = engine_for_site(session, call.site_id, config)
        row.engine, row.language = spec.name[:50], spec.language[:10]
        row.attempts = (row.attempts or 0) + 1
        status = outcome.status
        if status == RETRY:
            if row.attempts >= settings["max_attempts"]:
                status = FAILED
                row.next_attempt_at = None
            else:
                delay = settings["retry_seconds"] * 2 ** (row.attempts - 1)
                row.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        row.status, row.detail = status, (outcome.detail or None) and outcome.detail[:DETAIL]
        if status == DONE:
            heard = [w for w in outcome.words if not w.get("k")]
            row.words, row.audio_seconds = outcome.words, outcome.audio_seconds
            row.text = transcript_text(outcome.words)
            row.search_text = search.search_text(heard)
            row.next_attempt_at = None
            session.flush()
            tag_call(session, call, outcome.words)
        return status


def tag_call(session: Session, call: Call, words: list[dict]) -> list[CallSpeechTag]:
    """Replace the call's automatic tags with the site's dictionary matches in ``words``."""
    session.execute(delete(CallSpeechTag).where(CallSpeechTag.call_id == call.id))
    tags = [CallSpeechTag(call_id=call.id, tag=m.tag[:80], phrase=m.phrase[:200], speaker=m.speaker,
                          at_seconds=round(m.at, 2), negative=m.negative)
            for m in matching.find(phrases_for_site(session, call.site_id), words)]
    session.add_all(tags)
    return tags
