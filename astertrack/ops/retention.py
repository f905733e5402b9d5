"""Retention: delete calls, visitor sessions and recordings older than each site allows.

Each site sets ``calls_retention_days``, ``sessions_retention_days`` and
``recordings_retention_days`` (NULL = use the ``[retention]`` default from the config;
0 = keep forever).  Page views and visitor actions (the journey) go after the site's
``pageviews_retention_days`` (NULL or 0: as long as their session).  Website chats and their
messages go after the site's ``SiteWidget.chat_retention_days`` (365 without a widget row; 0: kept
forever), counted from when a chat closed, or from its last change while it is open.  Recordings have their own, usually shorter, limit: the call row stays
(reports keep working), only the audio goes and ``recording_state`` becomes ``deleted``.

Safety rules:
* a recording file is removed first and the row marked afterwards, so a crash in between
  leaves a row pointing at a missing file (marked on the next run), never an orphan file;
* a stored path is resolved inside the recordings directory (``astertrack.routing.recording``);
  a path that escapes it is refused and reported, never deleted;
* rows are deleted in small batches, each its own transaction, so the live daemons never
  wait long for a lock (SQLite) and a huge first sweep does not hold one giant transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from astertrack.db.engine import begin_write
from astertrack.db.models import (
    AuditLog,
    Call,
    CallEvent,
    CdrRecord,
    Chat,
    ChatMessage,
    NumberAssignment,
    NumberPool,
    OverflowEvent,
    PageView,
    PoolUsageSample,
    Site,
    SiteWidget,
    VisitorAction,
    VisitorSession,
)
from astertrack.routing.recording import resolve_recording

log = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".wav", ".WAV", ".gsm", ".mp3", ".wav49", ".ogg")
CHAT_RETENTION_DAYS = 365  # a site without a widget row: SiteWidget.chat_retention_days's default


@dataclass(frozen=True)
class Policy:
    """Days to keep each kind of data; None = keep forever."""

    calls_days: int | None = None
    sessions_days: int | None = None
    recordings_days: int | None = None
    pageviews_days: int | None = None  # page views and visitor actions; None: with their session
    chats_days: int | None = None  # website chats and their messages; None: kept forever


@dataclass
class SiteReport:
    site_id: int | None
    site_name: str
    policy: Policy
    calls_deleted: int = 0
    sessions_deleted: int = 0
    recordings_deleted: int = 0
    recordings_missing: int = 0
    bytes_freed: int = 0
    pageviews_deleted: int = 0  # page views and visitor actions
    chats_deleted: int = 0
    chat_messages_deleted: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.calls_deleted} calls", f"{self.sessions_deleted} sessions",
                 f"{self.recordings_deleted} recordings ({human_bytes(self.bytes_freed)})"]
        if self.chats_deleted:
            parts.append(f"{self.chats_deleted} chats ({self.chat_messages_deleted} messages)")
        if self.recordings_missing:
            parts.append(f"{self.recordings_missing} recordings already gone")
        text = f"{self.site_name}: freed " + ", ".join(parts)
        if self.errors:
            text += f"; {len(self.errors)} errors"
        return text


@dataclass
class SweepReport:
    started_at: dt.datetime
    dry_run: bool
    sites: list[SiteReport] = field(default_factory=list)
    raw_events_deleted: int = 0
    audit_deleted: int = 0

    @property
    def totals(self) -> dict[str, int]:
        keys = ("calls_deleted", "sessions_deleted", "recordings_deleted", "recordings_missing", "bytes_freed",
                "pageviews_deleted", "chats_deleted", "chat_messages_deleted")
        out = {key: sum(getattr(site, key) for site in self.sites) for key in keys}
        out["raw_events_deleted"] = self.raw_events_deleted
        out["audit_deleted"] = self.audit_deleted
        out["errors"] = sum(len(site.errors) for site in self.sites)
        return out

    def as_dict(self) -> dict:
        return {"started_at": self.started_at.isoformat(), "dry_run": self.dry_run, "totals": self.totals,
                "sites": [{**asdict(site), "policy": asdict(site.policy)} for site in self.sites]}


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TB"


def _days(value: int | None, default: int | None) -> int | None:
    chosen = default if value is None else value
    return chosen if chosen else None  # 0 and None both mean "keep forever"


def site_policy(site: Site | None, defaults: Policy, chat_days: int | None = CHAT_RETENTION_DAYS) -> Policy:
    """``chat_days``: the site's ``SiteWidget.chat_retention_days`` (the widget's own table)."""
    if site is None:
        return defaults
    return Policy(_days(site.calls_retention_days, defaults.calls_days),
                  _days(site.sessions_retention_days, defaults.sessions_days),
                  _days(site.recordings_retention_days, defaults.recordings_days),
                  _days(site.pageviews_retention_days, None),
                  _days(chat_days, CHAT_RETENTION_DAYS))


def defaults_from_config(config) -> Policy:
    section = config.values.get("retention", {})
    return Policy(_days(None, section.get("calls_days")), _days(None, section.get("sessions_days")),
                  _days(None, section.get("recordings_days")))


class Sweeper:
    """One sweep over every site (plus calls that belong to no site)."""

    def __init__(self, session_factory: sessionmaker[Session], recordings_dir: str | Path,
                 defaults: Policy = Policy(), raw_events_days: int | None = None, batch_size: int = 500,
                 now: dt.datetime | None = None, dry_run: bool = False, audit_days: int | None = None):
        self.factory = session_factory
        self.recordings_dir = Path(recordings_dir)
        self.defaults = defaults
        self.raw_events_days = raw_events_days or None
        self.audit_days = audit_days or None
        self.batch = batch_size
        self.now = now or dt.datetime.now(dt.UTC)
        self.dry_run = dry_run
        self._counted: set[int] = set()  # dry run: recordings already counted once

    def run(self, site_ids: Iterable[int] | None = None) -> SweepReport:
        report = SweepReport(started_at=self.now, dry_run=self.dry_run)
        wanted = set(site_ids) if site_ids is not None else None
        with self.factory() as session:
            sites = list(session.scalars(select(Site).order_by(Site.id)))
            chat_days = dict(session.execute(select(SiteWidget.site_id, SiteWidget.chat_retention_days)).all())
            session.expunge_all()
        for site in sites:
            if wanted is not None and site.id not in wanted:
                continue
            policy = site_policy(site, self.defaults, chat_days.get(site.id, CHAT_RETENTION_DAYS))
            report.sites.append(self.sweep_site(site.id, site.name, policy))
        if wanted is None:
            report.sites.append(self.sweep_site(None, "(calls without a site)", self.defaults))
            report.raw_events_deleted = self._sweep_raw_events()
            report.audit_deleted = self._sweep_audit()
        for site in report.sites:
            log.info("retention %s%s", "(dry run) " if self.dry_run else "", site.summary())
        return report

    def cutoff(self, days: int) -> dt.datetime:
        return self.now - dt.timedelta(days=days)

    def sweep_site(self, site_id: int | None, name: str, policy: Policy) -> SiteReport:
        report = SiteReport(site_id=site_id, site_name=name, policy=policy)
        site_filter = Call.site_id == site_id if site_id is not None else Call.site_id.is_(None)
        if policy.recordings_days:
            self._sweep_recordings(report, site_filter, self.cutoff(policy.recordings_days))
        if policy.calls_days:
            self._sweep_calls(report, site_filter, self.cutoff(policy.calls_days))
        if policy.pageviews_days and site_id is not None:
            self._sweep_pageviews(report, site_id, self.cutoff(policy.pageviews_days))
        if policy.sessions_days and site_id is not None:
            self._sweep_sessions(report, site_id, self.cutoff(policy.sessions_days))
        if policy.chats_days and site_id is not None:
            self._sweep_chats(report, site_id, self.cutoff(policy.chats_days))
        return report

    # -- recordings -------------------------------------------------------------------

    def _recording_candidates(self, stored: str) -> list[Path] | None:
        """Files on disk for a stored path; None if the path escapes the recordings dir."""
        base = resolve_recording(self.recordings_dir, stored)
        if base is None:
            return None
        if base.is_file():
            return [base]
        found = []
        for suffix in RECORDING_SUFFIXES:
            candidate = resolve_recording(self.recordings_dir, stored + suffix)
            if candidate is not None and candidate.is_file():
                found.append(candidate)
        return found

    def _delete_files(self, report: SiteReport, call_id: int, stored: str) -> bool:
        """Remove a call's recording files; True when the row may be marked deleted."""
        if call_id in self._counted:
            return True
        if self.dry_run:
            self._counted.add(call_id)
        files = self._recording_candidates(stored)
        if files is None:
            report.errors.append(f"call {call_id}: recording path {stored!r} is outside {self.recordings_dir}; "
                                 "not deleted")
            return False
        if not files:
            report.recordings_missing += 1
            return True
        for path in files:
            try:
                size = path.stat().st_size
                if not self.dry_run:
                    path.unlink()
                    self._prune_empty_dirs(path.parent)
            except FileNotFoundError:
                continue
            except OSError as exc:
                report.errors.append(f"call {call_id}: cannot delete {path}: {exc.strerror or exc}")
                return False
            report.bytes_freed += size
        report.recordings_deleted += 1
        return True

    def _prune_empty_dirs(self, directory: Path) -> None:
        base = self.recordings_dir.resolve()
        while directory != base and base in directory.parents:
            try:
                directory.rmdir()  # only succeeds when empty
            except OSError:
                return
            directory = directory.parent

    def _sweep_recordings(self, report: SiteReport, site_filter, cutoff: dt.datetime) -> None:
        last_id = 0
        while True:
            with self.factory() as session:
                rows = session.execute(
                    select(Call.id, Call.recording_path)
                    .where(site_filter, Call.started_at < cutoff, Call.recording_path.is_not(None),
                           Call.id > last_id,
                           (Call.recording_state.is_(None)) | (Call.recording_state.not_in(("deleted", "missing"))))
                    .order_by(Call.id).limit(self.batch)
                ).all()
            if not rows:
                return
            last_id = rows[-1][0]
            done = [call_id for call_id, stored in rows if self._delete_files(report, call_id, stored)]
            if done and not self.dry_run:
                with self.factory() as session:
                    begin_write(session)
                    session.execute(update(Call).where(Call.id.in_(done)).values(recording_state="deleted"))
                    session.commit()

    # -- calls ------------------------------------------------------------------------

    def _sweep_calls(self, report: SiteReport, site_filter, cutoff: dt.datetime) -> None:
        last_id = 0
        while True:
            with self.factory() as session:
                rows = session.execute(
                    select(Call.id, Call.recording_path, Call.recording_state)
                    .where(site_filter, Call.started_at < cutoff, Call.id > last_id)
                    .order_by(Call.id).limit(self.batch)
                ).all()
            if not rows:
                return
            last_id = rows[-1][0]
            deletable = []
            for call_id, stored, state in rows:
                # A call's audio goes with it; a recording we cannot delete keeps its row.
                if stored and state not in ("deleted", "missing") and not self._delete_files(report, call_id, stored):
                    continue
                deletable.append(call_id)
            report.calls_deleted += len(deletable)
            if deletable and not self.dry_run:
                with self.factory() as session:
                    begin_write(session)
                    # Raw events first: CallEvent.call_id cascades in the schema, but doing it
                    # explicitly keeps the batch cost visible and works without FK enforcement.
                    session.execute(delete(CallEvent).where(CallEvent.call_id.in_(deletable)))
                    session.execute(delete(Call).where(Call.id.in_(deletable)))
                    session.commit()

    # -- sessions ---------------------------------------------------------------------

    def _sweep_sessions(self, report: SiteReport, site_id: int, cutoff: dt.datetime) -> None:
        while True:
            with self.factory() as session:
                if not self.dry_run:
                    begin_write(session)
                ids = list(session.scalars(
                    select(VisitorSession.id)
                    .where(VisitorSession.site_id == site_id, VisitorSession.last_seen < cutoff)
                    .order_by(VisitorSession.id).limit(self.batch)
                ))
                if not ids:
                    break
                report.sessions_deleted += len(ids)
                if self.dry_run:
                    # Count the rest without deleting.
                    report.sessions_deleted += self._count_rest_sessions(session, site_id, cutoff, ids[-1])
                    break
                session.execute(delete(NumberAssignment).where(NumberAssignment.session_id.in_(ids)))
                for journey in (PageView, VisitorAction):  # (they cascade; explicit without FK enforcement)
                    session.execute(delete(journey).where(journey.session_id.in_(ids)))
                session.execute(delete(VisitorSession).where(VisitorSession.id.in_(ids)))
                session.commit()
        if self.dry_run:
            return
        with self.factory() as session:
            begin_write(session)
            session.execute(delete(OverflowEvent).where(OverflowEvent.site_id == site_id,
                                                        OverflowEvent.occurred_at < cutoff))
            pools = select(NumberPool.id).where(NumberPool.site_id == site_id)
            session.execute(delete(PoolUsageSample).where(PoolUsageSample.pool_id.in_(pools),
                                                          PoolUsageSample.sampled_at < cutoff))
            session.commit()

    def _sweep_pageviews(self, report: SiteReport, site_id: int, cutoff: dt.datetime) -> None:
        """The site's page views and visitor actions older than its page-view retention (the
        sessions stay: calls and leads point at them)."""
        from sqlalchemy import func

        for model in (PageView, VisitorAction):
            while True:
                with self.factory() as session:
                    if not self.dry_run:
                        begin_write(session)
                    ids = list(session.scalars(select(model.id).where(model.site_id == site_id, model.at < cutoff)
                                               .order_by(model.id).limit(self.batch)))
                    if not ids:
                        break
                    report.pageviews_deleted += len(ids)
                    if self.dry_run:
                        report.pageviews_deleted += session.scalar(select(func.count()).select_from(model).where(
                            model.site_id == site_id, model.at < cutoff, model.id > ids[-1])) or 0
                        break
                    session.execute(delete(model).where(model.id.in_(ids)))
                    session.commit()

    def _sweep_chats(self, report: SiteReport, site_id: int, cutoff: dt.datetime) -> None:
        """The site's chats closed (or, still open, last changed) before ``cutoff``, with their
        messages: deleted explicitly, not left to the foreign key's cascade (SQLite without
        ``foreign_keys`` would keep orphans).  The chat's enquiry stays in its lead."""
        old = and_(Chat.site_id == site_id, func.coalesce(Chat.closed_at, Chat.updated_at) < cutoff)
        while True:
            with self.factory() as session:
                if not self.dry_run:
                    begin_write(session)
                ids = list(session.scalars(select(Chat.id).where(old).order_by(Chat.id).limit(self.batch)))
                if not ids:
                    break
                if self.dry_run:
                    report.chats_deleted += session.scalar(select(func.count()).select_from(Chat).where(old)) or 0
                    report.chat_messages_deleted += session.scalar(
                        select(func.count()).select_from(ChatMessage).join(Chat, Chat.id == ChatMessage.chat_id)
                        .where(old)) or 0
                    break
                report.chat_messages_deleted += session.execute(
                    delete(ChatMessage).where(ChatMessage.chat_id.in_(ids))).rowcount or 0
                session.execute(delete(Chat).where(Chat.id.in_(ids)))
                session.commit()
                report.chats_deleted += len(ids)

    @staticmethod
    def _count_rest_sessions(session: Session, site_id: int, cutoff: dt.datetime, after: int) -> int:
        from sqlalchemy import func

        return session.scalar(select(func.count()).select_from(VisitorSession).where(
            VisitorSession.site_id == site_id, VisitorSession.last_seen < cutoff, VisitorSession.id > after)) or 0

    # -- raw AMI events ---------------------------------------------------------------

    def _sweep_raw_events(self) -> int:
        """Raw AMI events and Asterisk's CDR lines older than ``raw_events_days`` (the calls keep
        every figure derived from them; only a rebuild of such old calls is no longer possible)."""
        if not self.raw_events_days:
            return 0
        cutoff = self.cutoff(self.raw_events_days)
        return sum(self._sweep_table(model, stored_at, cutoff)
                   for model, stored_at in ((CallEvent, CallEvent.received_at), (CdrRecord, CdrRecord.read_at)))

    def _sweep_audit(self) -> int:
        """Settings-history entries older than ``[retention] audit_days``."""
        if not self.audit_days:
            return 0
        return self._sweep_table(AuditLog, AuditLog.at, self.cutoff(self.audit_days))

    def _sweep_table(self, model, stored_at, cutoff: dt.datetime) -> int:
        total = 0
        while True:
            with self.factory() as session:
                if not self.dry_run:
                    begin_write(session)
                ids = list(session.scalars(select(model.id).where(stored_at < cutoff)
                                           .order_by(model.id).limit(self.batch * 10)))
                if not ids:
                    return total
                total += len(ids)
                if self.dry_run:
                    return total
                session.execute(delete(model).where(model.id.in_(ids)))
                session.commit()


def sweep_from_config(config, session_factory: sessionmaker[Session], dry_run: bool = False,
                      site_ids: Iterable[int] | None = None, now: dt.datetime | None = None) -> SweepReport:
    section = config.values.get("retention", {})
    return Sweeper(session_factory, config.values["recordings"]["dir"], defaults=defaults_from_config(config),
                   raw_events_days=section.get("raw_events_days"), batch_size=section.get("batch_size", 500),
                   now=now, dry_run=dry_run, audit_days=section.get("audit_days")).run(site_ids)


LAST_REPORT_NAME = "retention-last.json"


def save_last_report(data_dir: str | Path, report: SweepReport) -> Path:
    """Keep the latest sweep's report beside the data, for the admin's retention page."""
    import json

    path = Path(data_dir) / LAST_REPORT_NAME
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report.as_dict(), indent=2), encoding="utf-8")
    os.replace(tmp, path)
    return path


def last_report(data_dir: str | Path) -> dict | None:
    """The latest sweep's report (``started_at``, ``totals``, ``sites``), or None if none ran yet."""
    import json

    path = Path(data_dir) / LAST_REPORT_NAME
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- disk usage for the admin


@dataclass(frozen=True)
class DiskUsage:
    directory: str
    files: int
    bytes: int
    by_month: dict[str, int]  # "2026-11" -> bytes, from the YYYY/MM/DD layout (other files: "other")
    filesystem_total: int | None
    filesystem_free: int | None
    measured_at: float

    @property
    def human(self) -> str:
        return human_bytes(self.bytes)


_usage_cache: dict[str, DiskUsage] = {}
_usage_lock = threading.Lock()


def recordings_disk_usage(recordings_dir: str | Path, max_age: float = 300.0) -> DiskUsage:
    """Size of the recordings directory, cached ``max_age`` seconds (a walk is not free).

    For the web admin's settings/retention page: ``usage.human``, ``usage.files``,
    ``usage.by_month`` and the filesystem's free space.
    """
    key = str(Path(recordings_dir).resolve())
    with _usage_lock:
        cached = _usage_cache.get(key)
        if cached and time.monotonic() - cached.measured_at < max_age:
            return cached
    files = total = 0
    by_month: dict[str, int] = {}
    root = Path(key)
    if root.is_dir():
        for dirpath, _dirnames, filenames in os.walk(root):
            rel = Path(dirpath).relative_to(root).parts
            month = f"{rel[0]}-{rel[1]}" if len(rel) >= 2 and rel[0].isdigit() and rel[1].isdigit() else "other"
            for name in filenames:
                try:
                    size = os.stat(os.path.join(dirpath, name)).st_size
                except OSError:
                    continue
                files += 1
                total += size
                by_month[month] = by_month.get(month, 0) + size
    try:
        disk = shutil.disk_usage(root if root.is_dir() else root.parent)
        fs_total, fs_free = disk.total, disk.free
    except OSError:
        fs_total = fs_free = None
    usage = DiskUsage(key, files, total, dict(sorted(by_month.items())), fs_total, fs_free, time.monotonic())
    with _usage_lock:
        _usage_cache[key] = usage
    return usage
