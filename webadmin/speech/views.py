"""Speech pages: a site's engine and dictionaries (admins edit, the page says whether the engine and
its model are ready, or why not), and transcript search (every role, within the calls it may see)."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select

from astertrack.db.engine import begin_write
from astertrack.db.models import Call, Site, SpeechPhrase, SpeechSettings
from astertrack.db.types import utcnow
from astertrack.speech import normalize, search, worker
from webadmin.db import get_session
from webadmin.security import ROLES, roles_required
from webadmin.settings.audit import record_change
from webadmin.site_pages import first_site_page, site_or_404
from webadmin.speech import bp
from webadmin.speech.forms import ButtonForm, EngineForm, PhraseForm

AUDIT_KIND = "speech"
MAX_PHRASES = 500  # per site: every call's words are compared with each


def _page(site: Site, engine_form: EngineForm | None = None, phrase_form: PhraseForm | None = None,
          status: int = 200):
    db = get_session()
    spec = worker.engine_for_site(db, site.id, _config())
    own = db.scalars(select(SpeechSettings).where(SpeechSettings.site_id == site.id)).first()
    if engine_form is None:
        engine_form = EngineForm(formdata=None, data={"engine": spec.name, "model_path": spec.model_path,
                                                      "language": spec.language})
    phrases = db.scalars(select(SpeechPhrase).where((SpeechPhrase.site_id == site.id) | SpeechPhrase.site_id.is_(None))
                         .order_by(SpeechPhrase.tag, SpeechPhrase.phrase)).all()
    return render_template(
        "speech/site.html", site=site, spec=spec, own=own, problem=worker.check_engine(spec),
        engine_form=engine_form, phrase_form=phrase_form or PhraseForm(formdata=None), button=ButtonForm(formdata=None),
        phrases=phrases, sites=db.scalars(select(Site).where(Site.archived_at.is_(None)).order_by(Site.name)).all(),
        normal=lambda text: " ".join(normalize.normalise(text))), status


@bp.get("/")
@roles_required("admin")
def index():
    return first_site_page("speech.site")


@bp.get("/<int:site_id>/")
@roles_required("admin")
def site(site_id: int):
    return _page(site_or_404(site_id))


@bp.post("/<int:site_id>/engine")
@roles_required("admin")
def save_engine(site_id: int):
    record = site_or_404(site_id)
    form = EngineForm()
    if not form.validate():
        return _page(record, engine_form=form, status=400)
    db = get_session()
    db.commit()
    begin_write(db)
    row = db.scalars(select(SpeechSettings).where(SpeechSettings.site_id == site_id)).first()
    before = _fields(row) if row else None
    if row is None:
        row = SpeechSettings(site_id=site_id, engine=form.engine.data)
        db.add(row)
    row.engine, row.model_path = form.engine.data, (form.model_path.data or "").strip() or None
    row.language, row.updated_at = (form.language.data or "").strip() or None, utcnow()
    record_change(db, "update" if before else "create", AUDIT_KIND, row, before, lambda: _fields(row))
    problem = worker.check_engine(worker.engine_for_site(db, site_id, _config()))
    if problem:
        flash(_("Saved, but the engine is not ready: %(problem)s", problem=problem), "error")
    else:
        flash(_("Saved: the engine and its model are ready."), "info")
    return redirect(url_for("speech.site", site_id=site_id))


@bp.post("/<int:site_id>/phrases")
@roles_required("admin")
def add_phrase(site_id: int):
    record = site_or_404(site_id)
    form = PhraseForm()
    if not form.validate():
        return _page(record, phrase_form=form, status=400)
    if not normalize.tokens(form.phrase.data):
        form.phrase.errors.append(_("The phrase has no words."))
        return _page(record, phrase_form=form, status=400)
    db = get_session()
    if db.scalar(select(func.count()).select_from(SpeechPhrase).where(SpeechPhrase.site_id == site_id)) >= MAX_PHRASES:
        form.phrase.errors.append(_("A site has at most %(num)s phrases.", num=MAX_PHRASES))
        return _page(record, phrase_form=form, status=400)
    db.commit()
    begin_write(db)
    row = SpeechPhrase(site_id=site_id, tag=form.tag.data.strip(), phrase=" ".join(form.phrase.data.split()),
                       speaker=form.speaker.data, negative=form.negative.data)
    db.add(row)
    record_change(db, "create", AUDIT_KIND, row, None, lambda: _phrase_fields(row))
    flash(_("Phrase added; calls transcribed from now on are tagged with it."), "info")
    return redirect(url_for("speech.site", site_id=site_id))


@bp.post("/<int:site_id>/phrases/<int:phrase_id>/delete")
@roles_required("admin")
def delete_phrase(site_id: int, phrase_id: int):
    site_or_404(site_id)
    form = ButtonForm()
    db = get_session()
    row = db.get(SpeechPhrase, phrase_id)
    if not form.validate() or row is None or row.site_id != site_id:
        flash(_("That phrase cannot be removed here."), "error")
        return redirect(url_for("speech.site", site_id=site_id))
    db.commit()
    begin_write(db)
    before = _phrase_fields(row)
    db.delete(row)
    record_change(db, "delete", AUDIT_KIND, row, before, lambda: None)
    flash(_("Phrase removed."), "info")
    return redirect(url_for("speech.site", site_id=site_id))


@bp.get("/search")
@roles_required(*ROLES)
def search_page():
    query = (request.args.get("q") or "")[: search.MAX_QUERY_LENGTH]
    hits, calls = [], {}
    if query.strip():
        db = get_session()
        hits = search.search(db, query, limit=100)
        if hits:
            visible = select(Call).where(Call.id.in_([h.call_id for h in hits]))
            if not current_user.is_staff:
                visible = visible.where(Call.manager_id == (current_user.manager_id or -1))
            calls = {c.id: c for c in db.scalars(visible)}
            hits = [h for h in hits if h.call_id in calls]
    return render_template("speech/search.html", query=query, hits=hits, calls=calls,
                           terms=search.query_terms(query) if query else [])


def _config():
    return current_app.config["ASTERTRACK_CONFIG"]


def _fields(row: SpeechSettings) -> dict:
    return {"engine": row.engine, "model_path": row.model_path, "language": row.language}


def _phrase_fields(row: SpeechPhrase) -> dict:
    return {"tag": row.tag, "phrase": row.phrase, "speaker": row.speaker, "negative": row.negative}
