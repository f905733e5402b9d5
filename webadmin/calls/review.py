"""Supervisor review on the call card (tags, comments, checklist score, handled mark) and the
admins' checklist page.  Supervisors and admins write; a manager sees the review of their own
calls read-only.  The rules live in ``astertrack.review``; these views only call them."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from wtforms.fields.choices import SelectChoice

from astertrack.db.engine import begin_write
from astertrack.db.models import Call, ChecklistItem, Site
from astertrack.review import actions
from astertrack.review.actions import ReviewError
from webadmin.calls import bp
from webadmin.calls.access import visible_call_or_404
from webadmin.calls.card import render_card
from webadmin.calls.forms import ActionForm, ChecklistItemForm, CommentForm, ScoreForm, TagForm
from webadmin.db import get_session
from webadmin.security import STAFF, roles_required

ERRORS = {
    "tag_empty": _l("Write a tag."),
    "tag_long": _l("A tag is at most 80 characters."),
    "comment_empty": _l("Write a comment."),
    "comment_long": _l("A comment is at most 4000 characters."),
    "no_checklist": _l("This call’s site has no checklist yet: an admin adds one under Checklists."),
    "not_missed": _l("Only a missed call can be marked handled."),
    "item_empty": _l("Write the item."),
    "item_long": _l("An item is at most 300 characters."),
    "points_range": _l("Points: from 1 to 100."),
}


def _writable_call(call_id: int) -> tuple[Session, Call]:
    """The call, in a session that holds the write lock (SQLite) before reading it again."""
    visible_call_or_404(call_id)
    db = get_session()
    db.commit()  # end the login's read transaction: the write transaction starts fresh
    begin_write(db)
    call = db.get(Call, call_id)
    if call is None:
        abort(404)
    return db, call


def _back(call: Call, anchor: str = "review"):
    return redirect(url_for("calls.card", call_id=call.id, _anchor=anchor), code=303)


def _refused(call: Call, error: ReviewError, forms: dict):
    get_session().rollback()
    flash(str(ERRORS.get(error.code, _("The request was not understood."))), "error")
    return render_card(call, forms, 400)


@bp.post("/<int:call_id>/tags")
@roles_required(*STAFF)
def add_tag(call_id: int):
    db, call = _writable_call(call_id)
    form = TagForm()
    if not form.validate():
        db.rollback()
        return render_card(call, {"tag": form}, 400)
    try:
        actions.add_tag(db, call, form.name.data)
        db.commit()
    except ReviewError as error:
        return _refused(call, error, {"tag": form})
    except IntegrityError:  # the same new tag created by someone else at this moment
        db.rollback()
        db, call = _writable_call(call_id)
        actions.add_tag(db, call, form.name.data)
        db.commit()
    return _back(call)


@bp.post("/<int:call_id>/tags/<int:tag_id>/remove")
@roles_required(*STAFF)
def remove_tag(call_id: int, tag_id: int):
    db, call = _writable_call(call_id)
    if ActionForm().validate():
        actions.remove_tag(db, call, tag_id)
        db.commit()
    return _back(call)


@bp.post("/<int:call_id>/comments")
@roles_required(*STAFF)
def add_comment(call_id: int):
    db, call = _writable_call(call_id)
    form = CommentForm()
    if not form.validate():
        db.rollback()
        return render_card(call, {"comment": form}, 400)
    actions.add_comment(db, call, current_user.id, form.text.data)
    db.commit()
    return _back(call, "comments")


@bp.post("/<int:call_id>/score")
@roles_required(*STAFF)
def score(call_id: int):
    db, call = _writable_call(call_id)
    form = ScoreForm()
    form.items.choices = [SelectChoice(item.id, item.text) for item in actions.checklist(db, call.site_id)]
    if not form.validate():
        db.rollback()
        return render_card(call, {"score": form}, 400)
    try:
        actions.record_score(db, call, current_user.id, form.items.data or [])
    except ReviewError as error:
        return _refused(call, error, {"score": form})
    db.commit()
    flash(_("Score saved."), "ok")
    return _back(call, "score")


@bp.post("/<int:call_id>/handled")
@roles_required(*STAFF)
def handled(call_id: int):
    db, call = _writable_call(call_id)
    if not ActionForm().validate():
        abort(400)
    try:
        if request.form.get("undo"):
            actions.undo_handled(db, call, current_user.id)
        else:
            actions.mark_handled(db, call, current_user.id)
        db.commit()
    except ReviewError as error:
        return _refused(call, error, {})
    except IntegrityError:  # marked by someone else at the same moment: their mark stands
        db.rollback()
    return _back(call, "handled")


# ---------------------------------------------------------------- checklists (admins)


def _site_choices(db: Session) -> list[SelectChoice]:
    return [SelectChoice("", _l("Every site"))] + [SelectChoice(sid, name) for sid, name in db.execute(
        select(Site.id, Site.name).order_by(Site.name))]


@bp.route("/checklists", methods=["GET", "POST"])
@roles_required("admin")
def checklists():
    db = get_session()
    form = ChecklistItemForm()
    form.site_id.choices = _site_choices(db)
    if request.method == "POST":
        if form.validate() and _save_item(db, None, form):
            flash(_("Saved."), "ok")
            return redirect(url_for("calls.checklists"), code=303)
    items = db.scalars(select(ChecklistItem).order_by(ChecklistItem.archived_at.is_not(None), ChecklistItem.site_id,
                                                      ChecklistItem.position, ChecklistItem.id)).all()
    sites = dict(db.execute(select(Site.id, Site.name)).all())
    return render_template("calls/checklists.html", form=form, items=items, sites=sites,
                           action_form=ActionForm(formdata=None)), (400 if form.errors else 200)


@bp.route("/checklists/<int:item_id>", methods=["GET", "POST"])
@roles_required("admin")
def checklist_item(item_id: int):
    db = get_session()
    item = db.get(ChecklistItem, item_id)
    if item is None:
        abort(404)
    form = ChecklistItemForm(obj=item)
    form.site_id.choices = _site_choices(db)
    if request.method == "POST" and form.validate() and _save_item(db, item, form):
        flash(_("Saved."), "ok")
        return redirect(url_for("calls.checklists"), code=303)
    return render_template("calls/checklist_item.html", form=form, item=item), (400 if form.errors else 200)


@bp.post("/checklists/<int:item_id>/archive")
@roles_required("admin")
def archive_item(item_id: int):
    db = get_session()
    item = db.get(ChecklistItem, item_id)
    if item is None:
        abort(404)
    if ActionForm().validate():
        actions.archive_item(item, archived=not request.form.get("restore"))
        db.commit()
        flash(_("Restored.") if request.form.get("restore") else _("Archived: past scores keep it."), "ok")
    return redirect(url_for("calls.checklists"), code=303)


def _save_item(db: Session, item: ChecklistItem | None, form: ChecklistItemForm) -> bool:
    site_id = form.site_id.data
    if site_id is not None and db.get(Site, site_id) is None:
        form.site_id.errors.append(_("Choose a site."))
        return False
    try:
        data = actions.clean_item(form.text.data, form.points.data, site_id, form.position.data)
    except ReviewError as error:
        form.text.errors.append(str(ERRORS[error.code]))
        return False
    actions.save_item(db, item, data)
    db.commit()
    return True
