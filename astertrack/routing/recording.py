"""THE recording file name template, shared by the AGI (which decides it) and the listener.

Built only from ids we generate, never from caller id (app_mixmonitor warns that caller-
controlled text in the file name is a command-injection risk).  Layout:
``YYYY/MM/DD/<call_uid>`` under the recordings directory, extension added by the dialplan.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def recording_name(call_uid: str, started_at: dt.datetime) -> str:
    """Relative name without extension, e.g. ``2026/11/23/9f0c...``."""
    if not _SAFE.match(call_uid):
        raise ValueError(f"unsafe call id for a file name: {call_uid!r}")
    day = started_at.astimezone(dt.UTC)
    return f"{day:%Y/%m/%d}/{call_uid}"


def resolve_recording(recordings_dir: str | Path, stored_path: str) -> Path | None:
    """Absolute path of a stored recording, or None if it would escape the recordings dir.

    Paths come from the database (written from AMI/AGI data), so they are checked before the
    web admin opens them.
    """
    base = Path(recordings_dir).resolve()
    candidate = Path(stored_path)
    if not candidate.is_absolute():
        candidate = base / candidate
    candidate = candidate.resolve()
    if candidate != base and base not in candidate.parents:
        return None
    return candidate
