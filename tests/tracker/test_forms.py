"""The web form endpoint (``POST /v/form``) over real HTTP on loopback, on SQLite and PostgreSQL:
the guards /v/start has (site key, Origin by the site's domains, body cap, rate limits), every body
sendBeacon can send, hostile input kept as text, and the enquiry in its lead with the visit's
attribution (through the leads core)."""

from __future__ import annotations

import io
import json
import urllib.parse
import urllib.request
import uuid

import pytest
from sqlalchemy import select

from astertrack.db.models import CallbackRequest, Enquiry, Lead, VisitorSession
from astertrack.journey.cleaning import clean_url
from astertrack.samples.factories import add_dynamic_source, add_pool, number_range, pooled_site
from tests.tracker.conftest import BROWSER_ORIGIN, post, serve
from tests.webadmin.conftest import app, auth, client, data, db, recordings_dir  # noqa: F401  (the admin's fixtures)
from tracker.guard import BadRequest, read_form_body

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
HEADERS = {"User-Agent": UA}


def send_form(url, key, headers=None, **fields):
    return post(f"{url}/v/form", {"k": key, **fields}, {**HEADERS, **(headers or {})})


def enquiries(session):
    session.rollback()  # a fresh snapshot: the tracker wrote over its own connection
    return session.scalars(select(Enquiry).order_by(Enquiry.id)).all()


def ad_site(session):
    """A site whose Yandex ads visitors are the source "Direct"."""
    site = pooled_site(session, 2)
    pool = add_pool(session, site, "Direct", number_range("+74997000000", 2))
    source = add_dynamic_source(session, site, "Direct", pool, priority=20,
                                match_rules=[{"field": "utm_source", "op": "equals", "value": "yandex"}])
    session.commit()
    return site, source


def test_a_form_joins_a_lead_with_the_visit_attribution(session, tracker_url):
    site, source = ad_site(session)
    _, visit, _ = post(f"{tracker_url}/v/start", {"k": site.public_key, "visitor_id": "v1", "utm_source": "yandex",
                                                  "utm_campaign": "windows", "gclid": "G-1"}, HEADERS)
    page = "https://example.ru/contacts?utm_source=yandex&token=SECRET&email=a%40b.ru&gclid=G-1#reset=x"
    status, body, headers = send_form(tracker_url, site.public_key, sid=visit["sid"], name="Иван Петров",
                                      phone="8 (916) 123-45-67", email="Ivan@Example.RU",
                                      message="Нужны окна\nна дачу", page=page, form="contact")
    assert status == 204 and body is None
    assert headers["Access-Control-Allow-Origin"] == BROWSER_ORIGIN
    [enquiry] = enquiries(session)
    row = session.scalar(select(VisitorSession).where(VisitorSession.public_id == visit["sid"]))
    assert (enquiry.channel, enquiry.session_id, enquiry.source_id) == ("form", row.id, source.id)
    assert (enquiry.utm_source, enquiry.utm_campaign, enquiry.gclid) == ("yandex", "windows", "G-1")
    assert (enquiry.name, enquiry.phone, enquiry.phone_raw, enquiry.phone_invalid) == (
        "Иван Петров", "+79161234567", "8 (916) 123-45-67", False)
    assert enquiry.email == "ivan@example.ru" and enquiry.message == "Нужны окна\nна дачу"
    assert enquiry.page_url == "https://example.ru/contacts?utm_source=yandex&gclid=G-1"  # no token, e-mail, fragment
    assert (enquiry.form_name, enquiry.ip, enquiry.user_agent) == ("contact", "127.0.0.1", UA)
    lead = session.get(Lead, enquiry.lead_id)
    assert (lead.first_channel, lead.source_id, lead.session_id, lead.phone) == ("form", source.id, row.id,
                                                                                  "+79161234567")
    # the same customer's second form (another format of the number) joins the lead as a repeat
    status, _, _ = send_form(tracker_url, site.public_key, phone="+7 916 123 45 67", message="и балкон")
    assert status == 204
    first, second = enquiries(session)
    assert second.lead_id == first.lead_id and second.repeat and second.session_id is None
    assert session.get(Lead, first.lead_id).enquiries_count == 2


def test_every_body_sendbeacon_sends_is_read(session, tracker_url):
    site = pooled_site(session, 1)
    url = f"{tracker_url}/v/form"
    urlencoded = urllib.parse.urlencode({"k": site.public_key, "phone": "+7 495 111-22-33", "form": "urlencoded",
                                         "name": "A&B=C"}).encode()
    boundary = uuid.uuid4().hex
    multipart = io.BytesIO()
    for name, value in (("k", site.public_key), ("email", "multi@example.ru"), ("form", "multipart"),
                        ("message", "line 1\r\nline 2")):
        multipart.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    multipart.write(f"--{boundary}--\r\n".encode())
    for content_type, raw in (("application/x-www-form-urlencoded;charset=UTF-8", urlencoded),
                              (f"multipart/form-data; boundary={boundary}", multipart.getvalue()),
                              ("application/json", json.dumps({"k": site.public_key, "phone": "+74951112234",
                                                               "form": "json"}).encode())):
        status, body, _ = post(url, None, {"Content-Type": content_type}, raw=raw)
        assert status == 204, body
    rows = {row.form_name: row for row in enquiries(session)}
    assert rows["urlencoded"].phone == "+74951112233" and rows["urlencoded"].name == "A&B=C"
    assert rows["multipart"].email == "multi@example.ru" and rows["multipart"].message == "line 1\r\nline 2"
    assert rows["json"].phone == "+74951112234"


def test_cors_by_the_sites_domains_and_no_origin_refused(session, tracker_url):
    site = pooled_site(session, 1, domains=("shop.example.ru",))
    status, body, headers = send_form(tracker_url, site.public_key, {"Origin": "https://evil.example.com"},
                                      phone="+74951112233")
    assert status == 403 and body["error"] == "origin not allowed for this site"
    assert "Access-Control-Allow-Origin" not in headers
    status, body, _ = send_form(tracker_url, site.public_key, {"Origin": None}, phone="+74951112233")
    assert status == 403 and "no Origin header" in body["error"]
    assert enquiries(session) == []
    status, _, headers = send_form(tracker_url, site.public_key, {"Origin": "https://shop.example.ru"},
                                   phone="+74951112233")
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "https://shop.example.ru"
    # the preflight an integration posting application/json needs: for the site's origins only
    for origin, expected in (("https://shop.example.ru", 204), ("https://evil.example.com", 403)):
        request = urllib.request.Request(f"{tracker_url}/v/form", method="OPTIONS", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, headers = response.status, response.headers
        except urllib.error.HTTPError as exc:
            status, headers = exc.code, exc.headers
        assert status == expected
        assert (headers["Access-Control-Allow-Origin"] == origin) is (expected == 204)
    assert len(enquiries(session)) == 1


def test_refusals_say_why_and_record_nothing(session, tracker_url):
    site = pooled_site(session, 1)
    url = f"{tracker_url}/v/form"
    cases = [
        (send_form(tracker_url, site.public_key, name="Only a name", message="no way to reach me"),
         400, "a form enquiry needs a phone or an e-mail: fields 'phone', 'email'"),
        (send_form(tracker_url, "", phone="+74951112233"), 400, "missing site key: field 'k'"),
        (send_form(tracker_url, "no-such-key", phone="+74951112233"), 404, "unknown site key"),
        (post(url, None, raw=b'{"k": "x", "phone": '), 400, "invalid JSON"),
        (post(url, None, {"Content-Type": "application/xml"}, raw=b"<form/>"), 415, "unsupported content type"),
        (post(url, None, {"Content-Type": "multipart/form-data"}, raw=b"--x--"), 400, "without a boundary"),
        (post(url, None, {"Content-Type": "application/x-www-form-urlencoded"}, raw=b"k=%FF%FE"), 400,
         "not valid UTF-8"),
    ]
    for (status, body, _), expected_status, message in cases:
        assert status == expected_status and message in body["error"]
    assert enquiries(session) == []


def test_an_oversized_form_is_refused_with_413(session, tracker_app):
    site = pooled_site(session, 1)
    with serve(tracker_app(max_body_bytes=4096)) as url:
        status, body, _ = send_form(url, site.public_key, phone="+74951112233", message="x" * 5000)
        assert status == 413 and body["error"] == "request body too large (limit 4096 bytes)"
        form = urllib.parse.urlencode({"k": site.public_key, "phone": "+74951112233", "message": "я" * 3000})
        status, body, _ = post(f"{url}/v/form", None, {"Content-Type": "application/x-www-form-urlencoded"},
                               raw=form.encode())
        assert status == 413
        status, _, _ = send_form(url, site.public_key, phone="+74951112233", message="x" * 3000)
        assert status == 204
    assert [row.message for row in enquiries(session)] == ["x" * 3000]


def test_forms_have_a_budget_of_their_own_per_client(session, tracker_app):
    from tracker.guard import FORMS_PER_MINUTE

    site = pooled_site(session, 1)
    with serve(tracker_app(rate_limit_per_minute=10 * FORMS_PER_MINUTE)) as url:
        statuses = [send_form(url, site.public_key, phone=f"+7495111{n:04d}")[0] for n in range(FORMS_PER_MINUTE + 2)]
        assert statuses == [204] * FORMS_PER_MINUTE + [429, 429]
        status, body, headers = send_form(url, site.public_key, phone="+74952220000")
        assert status == 429 and body["error"] == "too many requests" and int(headers["Retry-After"]) >= 1
        assert headers["Access-Control-Allow-Origin"] == BROWSER_ORIGIN  # the page's script can read why
        status, _, _ = post(f"{url}/v/start", {"k": site.public_key, "visitor_id": "v"}, HEADERS)
        assert status == 200  # page views go on
    with serve(tracker_app(rate_limit_per_minute=3)) as url:  # and the shared budget counts forms too
        statuses = [send_form(url, site.public_key, phone="+74953330000")[0] for _ in range(4)]
        assert statuses == [204, 204, 204, 429]
    assert len(enquiries(session)) == FORMS_PER_MINUTE + 3


HOSTILE = {
    "name": "<script>alert('name')</script>",
    "message": "\"><img src=x onerror=alert(1)>{{ 7*7 }} ${7*7} '; DROP TABLE leads; --\n\u202eevil",
    "email": "o%hara+{{7*7}}@example.ru",
    "form": "<svg onload=alert(1)>",
}


def test_hostile_input_is_stored_as_text(session, tracker_url):
    site = pooled_site(session, 1)
    status, _, _ = send_form(tracker_url, site.public_key, phone="+7 495 111-22-33\x00", sid={"$ne": None},
                             page="javascript:alert(document.cookie)", **HOSTILE)
    assert status == 204
    [enquiry] = enquiries(session)
    assert (enquiry.name, enquiry.message, enquiry.form_name) == (HOSTILE["name"], HOSTILE["message"], HOSTILE["form"])
    assert enquiry.email == "o%hara+{{7*7}}@example.ru" and enquiry.phone == "+74951112233"
    assert enquiry.page_url is None and enquiry.session_id is None  # not an http(s) page; not a session id
    assert session.scalar(select(Lead).where(Lead.id == enquiry.lead_id)) is not None  # the table is still there


def test_hostile_input_is_escaped_where_the_admin_sees_it(session, tracker_url, request):
    """The admin's lead card shows the form's text as text (the admin on the same database)."""
    request.getfixturevalue("data")  # the admin's users
    admin = request.getfixturevalue("client")
    site = pooled_site(session, 1)
    status, _, _ = send_form(tracker_url, site.public_key, phone="+74951112233", **HOSTILE)
    assert status == 204
    [enquiry] = [row for row in enquiries(session) if row.site_id == site.id]  # the seed has leads of its own
    request.getfixturevalue("auth").login("admin")
    response = admin.get(f"/leads/{enquiry.lead_id}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<script>alert('name')</script>" not in page and "<img src=x onerror" not in page
    assert "<svg onload" not in page
    assert "&lt;script&gt;alert(" in page and "&lt;img src=x onerror=alert(1)&gt;" in page


def test_an_e_mail_with_a_typo_is_kept_and_flagged_not_refused(session, tracker_url):
    """sendBeacon cannot show the visitor an error: a typo in the e-mail must not lose the form."""
    site = pooled_site(session, 1)
    status, _, _ = send_form(tracker_url, site.public_key, phone="+74951112233", email="ivan.mail.ru")
    assert status == 204
    status, _, _ = send_form(tracker_url, site.public_key, email="ivan.mail.ru")
    assert status == 204
    with_phone, only_mail = enquiries(session)
    assert (with_phone.phone, with_phone.email, with_phone.email_invalid) == ("+74951112233", "ivan.mail.ru", True)
    assert (only_mail.email, only_mail.email_invalid) == ("ivan.mail.ru", True)
    assert with_phone.lead_id != only_mail.lead_id  # a text that is not an address finds no lead


def test_a_phone_that_does_not_parse_is_kept_and_flagged(session, tracker_url):
    site = pooled_site(session, 1)
    for phone in ("call me after 6", "12"):
        status, _, _ = send_form(tracker_url, site.public_key, phone=phone, email="anna@example.ru")
        assert status == 204
    first, second = enquiries(session)
    assert (first.phone, first.phone_raw, first.phone_invalid) == (None, "call me after 6", True)
    assert (second.phone, second.phone_raw, second.phone_invalid) == (None, "12", True)
    assert first.lead_id == second.lead_id  # keyed by the e-mail then
    long_phone = "9" * 300
    status, _, _ = send_form(tracker_url, site.public_key, phone=long_phone)
    assert status == 204
    assert enquiries(session)[-1].phone_raw == long_phone[:64]


def test_a_session_of_another_site_or_an_unknown_one_gives_no_attribution(session, tracker_url):
    site, other = pooled_site(session, 1), pooled_site(session, 1)
    _, foreign, _ = post(f"{tracker_url}/v/start", {"k": other.public_key, "visitor_id": "o",
                                                    "utm_source": "other"}, HEADERS)
    for sid in (foreign["sid"], "0" * 32):
        status, _, _ = send_form(tracker_url, site.public_key, sid=sid, phone="+74951112233")
        assert status == 204
    assert [(row.session_id, row.utm_source, row.site_id) for row in enquiries(session)] == [(None, None, site.id)] * 2


def test_a_form_may_ask_for_a_callback(session, tracker_url):
    pytest.importorskip("astertrack.leads.callbacks")
    site = pooled_site(session, 1)
    _, visit, _ = post(f"{tracker_url}/v/start", {"k": site.public_key, "visitor_id": "v"}, HEADERS)
    status, _, _ = send_form(tracker_url, site.public_key, sid=visit["sid"], phone="8 916 123-45-67", callback="1")
    assert status == 204
    status, _, _ = send_form(tracker_url, site.public_key, phone="not a phone", email="x@example.ru", callback="1")
    assert status == 204  # recorded, flagged, never dialled
    first, second = enquiries(session)
    [callback] = session.scalars(select(CallbackRequest)).all()
    assert (callback.phone, callback.lead_id, callback.enquiry_id, callback.state) == (
        "+79161234567", first.lead_id, first.id, "scheduled")
    assert callback.session_id == first.session_id is not None and second.phone_invalid


def test_the_forms_script_is_served_and_cacheable(tracker_url):
    with urllib.request.urlopen(f"{tracker_url}/f.js") as response:
        body = response.read()
        assert response.headers["Content-Type"].startswith("application/javascript")
        assert "max-age" in response.headers["Cache-Control"] and response.headers["ETag"]
    assert b"sendBeacon" in body and b"preventDefault" not in body.replace(b"prevents the default", b"")
    assert b"innerHTML" not in body and b"eval(" not in body


def test_page_urls_keep_attribution_only():
    assert clean_url("https://u:p@Shop.Example.ru:8443/a?b=1&UTM_Source=ya&yclid=7&session=s#x") == (
        "https://shop.example.ru:8443/a?UTM_Source=ya&yclid=7")
    assert clean_url("http://example.ru") == "http://example.ru"
    for bad in (None, "", "javascript:alert(1)", "data:text/html,x", "//example.ru/", "http://[bad/"):
        assert clean_url(bad) is None
    assert len(clean_url("https://example.ru/" + "a" * 5000)) == 2048


def test_form_bodies_first_value_wins_and_limits():
    def read(raw: bytes, content_type: str, limit: int = 1000):
        return read_form_body(io.BytesIO(raw), len(raw), limit, content_type)

    assert read(b"phone=1&phone=2&k=x", "application/x-www-form-urlencoded") == {"phone": "1", "k": "x"}
    assert read(b'{"phone": 5}', "text/plain;charset=UTF-8") == {"phone": 5}
    with pytest.raises(BadRequest) as too_many:
        read(b"&".join(b"f%d=1" % n for n in range(300)), "application/x-www-form-urlencoded", 10_000)
    assert too_many.value.status == 400 and "too many form fields" in too_many.value.message
    with pytest.raises(BadRequest) as big:
        read(b"x=" + b"1" * 2000, "application/x-www-form-urlencoded")
    assert big.value.status == 413
