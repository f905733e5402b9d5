"""Supervisor call review: tags, comments, checklist scores and handled marks, who may write
them, and how the call log, the missed report and the export filter and show them."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from astertrack.db.models import CallComment, CallHandled, CallScore, ChecklistItem
from astertrack.review.scoring import score
from tests.webadmin.seed import XSS


def _items(db, data):
    greet = ChecklistItem(site_id=data.site, text="Greeted by name", points=2, position=1)
    need = ChecklistItem(site_id=data.site, text="Asked what they need", points=3, position=2)
    common = ChecklistItem(site_id=None, text="Said goodbye", points=5, position=1)
    db.add_all([greet, need, common])
    db.commit()
    return greet, need, common


def _csv(response):
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


def _log_ids(client, query: str) -> set[int]:
    rows = _csv(client.get(f"/calls/?{query}&format=csv"))
    return {int(r["id"]) for r in rows}


def test_score_is_ticked_points_over_all_points():
    items = [SimpleNamespace(id=1, text="a", points=2), SimpleNamespace(id=2, text="b", points=3),
             SimpleNamespace(id=3, text="c", points=5)]
    result = score(items, [1, 3, 99])  # 99: not an item of this checklist, ignored
    assert (result.points, result.max_points) == (7, 10)
    assert result.total == pytest.approx(0.7)
    assert [t["ticked"] for t in result.ticks] == [True, False, True]
    assert score(items, []).total == 0.0
    assert score([], [1]).total == 0.0  # nothing to score against: no division by zero


def test_supervisor_tags_comments_and_scores_a_call(client, auth, data, db):
    greet, need, common = _items(db, data)
    auth.login("super")
    page = f"/calls/{data.answered}"
    assert auth.post(f"/calls/{data.answered}/tags", {"name": "  needs   callback "}, page=page).status_code == 303
    assert auth.post(f"/calls/{data.answered}/comments", {"text": XSS}, page=page).status_code == 303
    response = auth.post(f"/calls/{data.answered}/score", {"items": [greet.id, common.id]}, page=page)
    assert response.status_code == 303
    card = client.get(page).get_data(as_text=True)
    assert "needs callback" in card and "hot" in card
    assert XSS not in card and "&lt;img src=x onerror=alert(1)&gt;" in card  # the comment is text
    assert "70%" in card and "7 of 10 points" in card
    stored = db.scalars(select(CallScore).where(CallScore.call_id == data.answered)).one()
    assert (stored.points, stored.max_points, stored.user_id) == (7, 10, data.users["super"])
    assert {t["text"]: t["ticked"] for t in stored.ticks} == {
        "Greeted by name": True, "Asked what they need": False, "Said goodbye": True}
    comment = db.scalars(select(CallComment)).one()
    assert comment.user_id == data.users["super"] and comment.text == XSS
    # a second score is a new row: the card shows the newest, the first stays as history
    auth.post(f"/calls/{data.answered}/score", {"items": [need.id]}, page=page)
    db.rollback()  # a fresh read: the app committed meanwhile
    assert len(db.scalars(select(CallScore).where(CallScore.call_id == data.answered)).all()) == 2
    assert "30%" in client.get(page).get_data(as_text=True)


def test_tag_removal_and_bad_input_keeps_what_was_typed(client, auth, data, db):
    auth.login("admin")
    page = f"/calls/{data.answered}"
    long_comment = "x" * 4001
    response = auth.post(f"/calls/{data.answered}/comments", {"text": long_comment}, page=page)
    assert response.status_code == 400 and long_comment in response.get_data(as_text=True)
    assert db.scalars(select(CallComment)).all() == []
    assert auth.post(f"/calls/{data.answered}/tags", {"name": "   "}, page=page).status_code == 400
    tags = client.get(f"/calls/{data.answered}").get_data(as_text=True)
    tag_id = int(tags.split(f"/calls/{data.answered}/tags/")[1].split("/")[0])
    assert auth.post(f"/calls/{data.answered}/tags/{tag_id}/remove", page=page).status_code == 303
    assert _log_ids(client, "tag=hot") == set()
    # no checklist for the site: a score is refused with a message, nothing stored
    response = auth.post(f"/calls/{data.answered}/score", {}, page=page)
    assert response.status_code == 400 and "no checklist" in response.get_data(as_text=True)
    assert db.scalars(select(CallScore)).all() == []


def test_manager_reads_the_review_of_own_calls_but_cannot_write(client, auth, data, db):
    greet, _need, _common = _items(db, data)
    auth.login("super")
    auth.post(f"/calls/{data.answered}/comments", {"text": "Good call"}, page=f"/calls/{data.answered}")
    auth.post(f"/calls/{data.answered}/score", {"items": [greet.id]}, page=f"/calls/{data.answered}")
    client.post("/auth/logout", data={"csrf_token": ""})
    client.delete_cookie("session")
    auth.login("anna")
    card = client.get(f"/calls/{data.answered}").get_data(as_text=True)
    assert "Good call" in card and "20%" in card
    assert 'id="comment-form"' not in card and 'id="score-form"' not in card and 'id="tag-form"' not in card
    page = f"/calls/{data.answered}"
    for path, form in ((f"/calls/{data.answered}/comments", {"text": "mine"}),
                       (f"/calls/{data.answered}/tags", {"name": "mine"}),
                       (f"/calls/{data.answered}/score", {"items": [greet.id]}),
                       (f"/calls/{data.missed}/handled", {})):
        assert auth.post(path, form, page=page).status_code == 403, path
    assert client.get("/calls/checklists").status_code == 403
    assert len(db.scalars(select(CallComment)).all()) == 1


def test_mark_handled_and_undo_keep_history(client, auth, data, db):
    auth.login("super")
    page = f"/calls/{data.missed}"
    assert auth.post(f"/calls/{data.missed}/handled", page=page).status_code == 303
    assert auth.post(f"/calls/{data.missed}/handled", page=page).status_code == 303  # twice: one mark
    card = client.get(page).get_data(as_text=True)
    assert "Handled by super" in card and 'id="undo-handled"' in card
    assert _log_ids(client, "handled=yes") == {data.missed}
    assert _log_ids(client, "handled=no") == {data.answered, data.callback}
    assert auth.post(f"/calls/{data.missed}/handled", {"undo": "1"}, page=page).status_code == 303
    assert _log_ids(client, "handled=yes") == set()
    marks = db.scalars(select(CallHandled)).all()
    assert len(marks) == 1 and marks[0].undone_by_id == data.users["super"] and marks[0].undone_at is not None
    assert auth.post(f"/calls/{data.missed}/handled", page=page).status_code == 303
    db.rollback()  # a fresh read: the app committed meanwhile
    assert len(db.scalars(select(CallHandled)).all()) == 2
    card = client.get(page).get_data(as_text=True)
    assert "undone by super" in card
    # an answered call is not "missed": marking it is refused
    response = auth.post(f"/calls/{data.answered}/handled", page=f"/calls/{data.answered}")
    assert response.status_code == 400 and "Only a missed call" in response.get_data(as_text=True)


def test_missed_report_filters_by_handled_and_tag(client, auth, data):
    auth.login("super")
    page = f"/calls/{data.missed}"
    auth.post(f"/calls/{data.missed}/tags", {"name": "callback"}, page=page)
    assert "Showing" not in client.get("/reports/missed").get_data(as_text=True)
    assert {int(r["id"]) for r in _csv(client.get("/reports/missed?handled=no&format=csv"))} == {data.missed}
    assert _csv(client.get("/reports/missed?handled=yes&format=csv")) == []
    auth.post(f"/calls/{data.missed}/handled", page=page)
    handled = _csv(client.get("/reports/missed?handled=yes&tag=callback&format=csv"))
    assert [int(r["id"]) for r in handled] == [data.missed] and handled[0]["handled_by"] == "super"
    assert _csv(client.get("/reports/missed?handled=no&format=csv")) == []
    assert _csv(client.get("/reports/missed?tag=hot&format=csv")) == []
    page_html = client.get("/reports/missed?handled=yes").get_data(as_text=True)
    assert 'id="missed-total"' in page_html and "outcome=missed_any" in page_html
    # the report's tag filter narrows the sources report too
    rows = _csv(client.get("/reports/sources?tag=callback&format=csv"))
    assert [(r["source"], r["total"]) for r in rows] == [("Organic", "1")]


def test_call_log_filters_by_tag_and_export_has_review_columns(client, auth, data, db):
    greet, _need, _common = _items(db, data)
    auth.login("super")
    auth.post(f"/calls/{data.answered}/score", {"items": [greet.id]}, page=f"/calls/{data.answered}")
    auth.post(f"/calls/{data.missed}/handled", page=f"/calls/{data.missed}")
    assert _log_ids(client, "tag=hot") == {data.answered}
    assert _log_ids(client, "tag=nothing") == set()
    html = client.get("/calls/?tag=hot").get_data(as_text=True)
    assert "1 call matches these filters." in html
    rows = {int(r["id"]): r for r in _csv(client.get("/calls/?format=csv"))}
    assert rows[data.answered]["tags"] == "hot" and rows[data.answered]["score"] == "20.0"
    assert rows[data.missed]["handled_by"] == "super" and rows[data.missed]["handled_at"]
    assert rows[data.callback]["handled_at"] == "" and rows[data.callback]["score"] == ""


def test_admin_edits_and_archives_checklist_items(client, auth, data, db):
    auth.login("admin")
    response = auth.post("/calls/checklists", {"text": "Offered a delivery date", "points": "4", "site_id": str(data.site),
                                               "position": "1"}, page="/calls/checklists")
    assert response.status_code == 303
    item = db.scalars(select(ChecklistItem)).one()
    assert (item.text, item.points, item.site_id) == ("Offered a delivery date", 4, data.site)
    bad = auth.post("/calls/checklists", {"text": "x", "points": "0", "site_id": "", "position": "0"},
                    page="/calls/checklists")
    assert bad.status_code == 400 and "between 1 and 100" in bad.get_data(as_text=True)
    auth.post(f"/calls/{data.answered}/score", {"items": [item.id]}, page=f"/calls/{data.answered}")
    assert auth.post(f"/calls/checklists/{item.id}/archive", page="/calls/checklists").status_code == 303
    db.rollback()  # a fresh read: the app committed meanwhile
    assert db.get(ChecklistItem, item.id).archived_at is not None
    card = client.get(f"/calls/{data.answered}").get_data(as_text=True)
    assert "100%" in card and 'id="score-form"' not in card  # the past score stays; no live items to tick
    auth.post(f"/calls/checklists/{item.id}/archive", {"restore": "1"}, page="/calls/checklists")
    db.rollback()  # a fresh read: the app committed meanwhile
    assert db.get(ChecklistItem, item.id).archived_at is None
    assert client.get(f"/calls/checklists/{item.id}").status_code == 200
