"""The call card: the call, its attribution, recording, timeline and supervisor review."""

from __future__ import annotations

import datetime as dt

from flask import current_app, render_template
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms.fields.choices import SelectChoice

from astertrack.db.models import Call, CallComment, CallerProfile, CallEvent, CallSpeechTag, Tag, Transcript
from astertrack.reporting import reports
from astertrack.review import actions
from astertrack.routing.recording import resolve_recording
from webadmin.calls.forms import ActionForm, CommentForm, ScoreForm, TagForm
from webadmin.db import get_session

AUDIO_SUFFIXES = (".wav", ".WAV", ".mp3", ".gsm", ".ogg")
TIMELINE_HEADERS = ("Channel", "DestChannel", "ChannelStateDesc", "DestChannelStateDesc", "DialStatus", "Cause",
                    "Cause-txt", "Queue", "Interface", "MemberName", "Position", "HoldTime", "TalkTime", "Reason",
                    "BridgeUniqueid", "Variable", "Value", "UserEvent")


# How sure an attribution is, in words: (lowest confidence, words), highest first.
CONFIDENCE_WORDS = ((0.95, _l("certain")), (0.8, _l("very likely")), (0.5, _l("likely")),
                    (0.01, _l("a guess")), (0.0, _l("not attributed")))
# Reasons whose count of candidate visits tells something (several released, several shown the fallback...)
COUNTED_REASONS = ("reused_contested", "several_released", "held_now_reassigned", "fallback_single_visit", "fallback_ambiguous",
                   "fallback_no_visit")


def confidence_words(value: float | None) -> str:
    """The confidence as the card says it ("likely"), beside the percentage."""
    if value is None:
        return "—"
    return str(next((words for floor, words in CONFIDENCE_WORDS if value >= floor), CONFIDENCE_WORDS[-1][1]))


def render_card(call, forms: dict | None = None, status: int = 200):
    """The call card; ``forms`` carries a review form that failed, shown with its errors."""
    db = get_session()
    events = db.scalars(select(CallEvent).where(CallEvent.call_id == call.id)
                        .order_by(CallEvent.event_time, CallEvent.id)).all()
    timeline = []
    for event in events:
        headers = event.headers or {}
        when = (dt.datetime.fromtimestamp(event.event_time, dt.UTC) if event.event_time else event.received_at)
        timeline.append({"name": event.name, "at": when,
                         "details": [(k, headers[k]) for k in TIMELINE_HEADERS if headers.get(k) not in (None, "")]})
    transcript = db.scalars(select(Transcript).where(Transcript.call_id == call.id)).first()
    speech_tags = db.scalars(select(CallSpeechTag).where(CallSpeechTag.call_id == call.id)
                             .order_by(CallSpeechTag.at_seconds, CallSpeechTag.id)).all()
    count, previous = reports.previous_calls(
        db, call, only_manager_id=None if current_user.is_staff else (current_user.manager_id or -1))
    return render_template("calls/card.html", call=call, session=call.session, timeline=timeline, transcript=transcript,
                           speech_tags=speech_tags, speech_lines=speech_lines(transcript),
                           seek=_seek_arg(), speech_status=SPEECH_STATUS,
                           previous=previous, previous_count=count, recording=_recording_status(call),
                           profile=_caller_profile(call), review=review_context(db, call, forms or {}),
                           confidence_words=confidence_words(call.attribution_confidence),
                           counted_reasons=COUNTED_REASONS), status


# What the card says about a transcript that has no text (Transcript.status)
SPEECH_STATUS = {"silent": _l("The recording is silent: nothing to transcribe."),
                 "empty": _l("The recording file is empty."),
                 "truncated": _l("The recording file is cut off (incomplete)."),
                 "not_audio": _l("The recording file is not audio the engine can read."),
                 "missing": _l("The recording file was not found when transcribing."),
                 "retry": _l("Transcription failed and will be tried again."),
                 "failed": _l("Transcription failed after several attempts.")}


def speech_lines(transcript: Transcript | None) -> list[dict]:
    """The transcript as lines of timed words, a new line at each change of speaker, so a click on a
    word moves the player there; spotted keywords are not words the engine transcribed."""
    if transcript is None or not transcript.words:
        return []
    lines: list[dict] = []
    for w in transcript.words:
        if w.get("k"):
            continue
        if not lines or lines[-1]["speaker"] != w.get("sp"):
            lines.append({"speaker": w.get("sp"), "words": []})
        lines[-1]["words"].append(w)
    return lines


def _seek_arg() -> float | None:
    """``?t=`` of a search result or a tag link: the second the player starts at."""
    from flask import request

    try:
        value = float(request.args.get("t", ""))
    except ValueError:
        return None
    return value if 0 <= value < 86400 else None


def _caller_profile(call) -> CallerProfile | None:
    """The caller's profile (VIP, tags) as routing sees it: one per site and number."""
    if not call.caller_number:
        return None
    site = CallerProfile.site_id.is_(None) if call.site_id is None else CallerProfile.site_id == call.site_id
    return get_session().scalars(select(CallerProfile).where(site, CallerProfile.number == call.caller_number)).first()


def _recording_status(call) -> str:
    """What the card says about the audio: ``playable``, or why there is none - nothing was
    recorded, nobody answered (bridged-only audio), retention deleted it, or the file is gone."""
    if not call.recording_path:
        return "not_recorded"
    if call.recording_state in ("deleted", "empty"):
        return call.recording_state
    return "playable" if recording_file(call) is not None else "missing"


def recording_file(call):
    if not call.recording_path or call.recording_state in ("deleted", "empty"):
        return None
    base = current_app.config["RECORDINGS_DIR"]
    path = resolve_recording(base, call.recording_path)
    if path is None:
        current_app.logger.warning("call %s: recording path escapes the recordings dir; refused", call.id)
        return None
    if path.is_file():
        return path
    if not path.suffix:
        for suffix in AUDIO_SUFFIXES:
            candidate = resolve_recording(base, call.recording_path + suffix)
            if candidate is not None and candidate.is_file():
                return candidate
    return None



def review_context(db: Session, call: Call, forms: dict) -> dict:
    """Everything the card's review section shows, and the forms a supervisor fills in."""
    editable = current_user.is_staff
    items = actions.checklist(db, call.site_id)
    history = actions.scores(db, call.id)
    score_form = forms.get("score") or ScoreForm(formdata=None)
    score_form.items.choices = [SelectChoice(item.id, f"{item.text} ({item.points})") for item in items]
    if "score" not in forms and history:
        score_form.items.data = [t["id"] for t in history[0].ticks if t.get("ticked")]
    comments = db.scalars(select(CallComment).where(CallComment.call_id == call.id)
                          .order_by(CallComment.at, CallComment.id)).all()
    return {
        "editable": editable,
        "comments": comments,
        "scores": history,
        "checklist": items,
        "missed": call.outcome in actions.MISSED_OUTCOMES,
        "mark": actions.current_mark(db, call.id),
        "marks": actions.handled_history(db, call.id),
        "known_tags": db.scalars(select(Tag.name).order_by(Tag.name)).all() if editable else [],
        "tag_form": forms.get("tag") or TagForm(formdata=None),
        "comment_form": forms.get("comment") or CommentForm(formdata=None),
        "score_form": score_form,
        "action_form": ActionForm(formdata=None),
    }
