"""The journey over real HTTP (``/v/j``, and riding on ``/v/ping`` and ``/v/leave``), on SQLite and
PostgreSQL: batches stored in order and once, oversized and malformed ones refused with what is
wrong and nothing stored, hostile text kept as text, the per-session cap, the site's privacy."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from astertrack.db.models import PageView, Site, VisitorAction, VisitorSession
from astertrack.journey import ingest
from astertrack.samples.factories import pooled_site
from tests.tracker.conftest import post

UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"}


def _start(url, site, **fields):
    status, body, _ = post(f"{url}/v/start", {"k": site.public_key, "visitor_id": "v1",
                                              "landing_page": "https://127.0.0.1/", **fields}, UA)
    assert status == 200, body
    return body


def _view(key, url, d=0, **extra):
    return {"t": "p", "id": key, "d": d, "u": url, **extra}


def _rows(session, model, sid):
    session.expire_all()
    visit = session.scalar(select(VisitorSession).where(VisitorSession.public_id == sid))
    return list(session.scalars(select(model).where(model.session_id == visit.id).order_by(model.at, model.id)))


def test_a_batch_is_stored_in_order_and_a_resent_view_updates_its_seconds(session, tracker_url):
    site = pooled_site(session, 2)
    sid = _start(tracker_url, site)["sid"]
    batch = [_view("a1", "https://127.0.0.1/?utm_source=ya&token=SECRET#top", 30000, ti="Home", s=20,
                   r="https://ya.ru/search?text=sofa"),
             _view("a2", "https://user:pw@127.0.0.1/sofas", 20000, ti="Sofas", s=10),
             _view("a3", "https://127.0.0.1/contacts", 1000, ti="Contacts"),
             {"t": "a", "id": "c1", "d": 500, "k": "tel_link", "x": "tel:+74950000000", "u": "https://127.0.0.1/contacts"},
             {"t": "a", "id": "c2", "d": 100, "k": "messenger_link", "x": "https://wa.me/79990000000?text=my+name+is",
              "u": "https://127.0.0.1/contacts"}]
    status, body, _ = post(f"{tracker_url}/v/j", {"k": site.public_key, "sid": sid, "ev": batch})
    assert status == 204, body
    # the same batch again (a retry) adds nothing; the last page, sent again on unload, gets its seconds
    assert post(f"{tracker_url}/v/j", {"k": site.public_key, "sid": sid, "ev": batch})[0] == 204
    assert post(f"{tracker_url}/v/leave", {"k": site.public_key, "sid": sid,
                                           "ev": [_view("a3", "https://127.0.0.1/contacts", 1000, s=45)]})[0] == 204

    views = _rows(session, PageView, sid)
    assert [v.url for v in views] == ["https://127.0.0.1/?utm_source=ya", "https://127.0.0.1/sofas",
                                      "https://127.0.0.1/contacts"]
    assert [v.title for v in views] == ["Home", "Sofas", "Contacts"]
    assert [v.seconds_on_page for v in views] == [20, 10, 45]
    assert views[0].referrer == "https://ya.ru/search"
    actions = _rows(session, VisitorAction, sid)
    assert [(a.kind, a.target) for a in actions] == [("tel_link", "tel:+74950000000"),
                                                     ("messenger_link", "https://wa.me/79990000000")]
    assert views[0].at < views[1].at < views[2].at < actions[0].at


def test_the_heartbeat_carries_the_batch(session, tracker_url):
    site = pooled_site(session, 2)
    sid = _start(tracker_url, site)["sid"]
    status, body, _ = post(f"{tracker_url}/v/ping", {"k": site.public_key, "sid": sid, "page": "https://127.0.0.1/b",
                                                     "ev": [_view("b1", "https://127.0.0.1/b", s=3)]}, UA)
    assert status == 200 and body["live"] is True
    assert [v.url for v in _rows(session, PageView, sid)] == ["https://127.0.0.1/b"]


@pytest.mark.parametrize("ev, status, says", [
    ("not a list", 400, "field 'ev' must be a list"),
    ([1], 400, "event 0: expected an object"),
    ([{"t": "p", "u": "https://127.0.0.1/"}], 400, "event 0: field 'id'"),
    ([{"t": "p", "id": "x" * 25, "u": "https://127.0.0.1/"}], 400, "event 0: field 'id'"),
    ([_view("ok", "https://127.0.0.1/"), {"t": "p", "id": "k", "u": "javascript:alert(1)"}], 400, "event 1: field 'u'"),
    ([{"t": "a", "id": "k", "k": "rm -rf"}], 400, "event 0: field 'k' must be one of"),
    ([{"t": "z", "id": "k"}], 400, "field 't'"),
    ([_view("k", "https://127.0.0.1/", d="soon")], 400, "field 'd' must be a number"),
    ([], 400, "no events"),
    ([_view(f"k{i}", "https://127.0.0.1/") for i in range(ingest.MAX_BATCH + 1)], 413, "too many events"),
])
def test_a_malformed_or_oversized_batch_is_refused_whole_and_says_why(session, tracker_url, ev, status, says):
    site = pooled_site(session, 1)
    sid = _start(tracker_url, site)["sid"]
    got, body, _ = post(f"{tracker_url}/v/j", {"k": site.public_key, "sid": sid, "ev": ev})
    assert got == status and says in body["error"]
    assert _rows(session, PageView, sid) == [] and _rows(session, VisitorAction, sid) == []


def test_a_malformed_batch_on_a_heartbeat_is_refused_before_the_heartbeat(session, tracker_url):
    site = pooled_site(session, 1)
    sid = _start(tracker_url, site)["sid"]
    status, body, _ = post(f"{tracker_url}/v/ping", {"k": site.public_key, "sid": sid, "ev": {"t": "p"}}, UA)
    assert status == 400 and "field 'ev'" in body["error"]


def test_a_body_over_the_size_cap_is_413_and_an_unknown_session_404(session, tracker_url):
    site = pooled_site(session, 1)
    huge = [_view("k", "https://127.0.0.1/" + "a" * 20000)]
    status, body, _ = post(f"{tracker_url}/v/j", {"k": site.public_key, "sid": "x", "ev": huge})
    assert status == 413 and "too large" in body["error"]
    status, body, _ = post(f"{tracker_url}/v/j", {"k": site.public_key, "sid": "nosuchsession",
                                                  "ev": [_view("k", "https://127.0.0.1/")]})
    assert status == 404 and "unknown session" in body["error"]


def test_hostile_text_is_stored_as_text_capped_and_without_control_characters(session, tracker_url):
    site = pooled_site(session, 1)
    sid = _start(tracker_url, site)["sid"]
    hostile = "<script>alert('x')</script>\x00\u202e\x1b[31m" + "я" * 1000
    ev = [_view("h1", "https://127.0.0.1/<img src=x onerror=alert(1)>", ti=hostile),
          {"t": "a", "id": "h2", "k": "phone_click", "x": hostile}]
    assert post(f"{tracker_url}/v/j", {"k": site.public_key, "sid": sid, "ev": ev})[0] == 204
    view, = _rows(session, PageView, sid)
    action, = _rows(session, VisitorAction, sid)
    assert view.title.startswith("<script>alert('x')</script>") and len(view.title) == 300
    assert "\x00" not in view.title and "\x1b" not in view.title
    assert view.url == "https://127.0.0.1/<img src=x onerror=alert(1)>"  # text: escaped where shown
    assert action.target.startswith("<script>") and len(action.target) == 500


def test_the_per_session_cap_stores_what_fits_and_says_the_rest_was_refused(session, tracker_url, monkeypatch):
    monkeypatch.setattr(ingest, "SESSION_CAP", 7)
    site = pooled_site(session, 1)
    sid = _start(tracker_url, site)["sid"]
    first = [_view(f"a{i}", f"https://127.0.0.1/{i}") for i in range(5)]
    assert post(f"{tracker_url}/v/j", {"k": site.public_key, "sid": sid, "ev": first})[0] == 204
    more = [_view(f"b{i}", f"https://127.0.0.1/b{i}") for i in range(5)]
    status, body, _ = post(f"{tracker_url}/v/j", {"k": site.public_key, "sid": sid, "ev": more})
    assert status == 429 and body["stored"] == 2 and "3 not stored" in body["error"]
    assert len(_rows(session, PageView, sid)) == 7
    status, body, _ = post(f"{tracker_url}/v/j", {"k": site.public_key, "sid": sid, "ev": more[:1]})
    assert status == 429 and body["stored"] == 0
    # a full journey never fails the heartbeat
    status, body, _ = post(f"{tracker_url}/v/ping", {"k": site.public_key, "sid": sid, "ev": more}, UA)
    assert status == 200 and body["live"] is True


def test_another_sites_session_is_not_written_to(session, tracker_url):
    site, other = pooled_site(session, 1), pooled_site(session, 1)
    sid = _start(tracker_url, site)["sid"]
    status, body, _ = post(f"{tracker_url}/v/j", {"k": other.public_key, "sid": sid,
                                                  "ev": [_view("k", "https://127.0.0.1/")]})
    assert status == 404 and _rows(session, PageView, sid) == []


def test_ip_anonymised_and_extra_query_parameters_kept_when_the_site_asks(session, tracker_app):
    from tests.tracker.conftest import serve

    site = pooled_site(session, 1, anonymise_ip=True, query_params_allowed=["page", "Color"])
    plain = pooled_site(session, 1)
    with serve(tracker_app()) as url:
        body = _start(url, site)
        assert body["q"] == ["color", "page"]
        assert "q" not in _start(url, plain)
        ev = [_view("k", "https://127.0.0.1/list?page=2&color=red&session=SECRET&utm_term=x")]
        assert post(f"{url}/v/j", {"k": site.public_key, "sid": body["sid"], "ev": ev})[0] == 204
    session.expire_all()
    visit = session.scalar(select(VisitorSession).where(VisitorSession.public_id == body["sid"]))
    assert visit.ip == "127.0.0.0"
    assert _rows(session, PageView, body["sid"])[0].url == "https://127.0.0.1/list?page=2&color=red&utm_term=x"
    assert session.get(Site, plain.id).anonymise_ip is False
