"""Messengers over real HTTP on loopback, on SQLite and PostgreSQL: the visit code (``POST /v/mc``),
the site's Telegram bot's webhook and the WhatsApp webhook (``tracker/messengers.py``), and
setWebhook reaching a local server that stands in for Telegram."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from astertrack.config import load_config
from astertrack.db.models import Enquiry, Lead, MessengerMessage, SiteMessengers, VisitorSession
from astertrack.leads import messengers
from astertrack.samples.factories import add_dynamic_source, add_pool, number_range, pooled_site
from tests.tracker.conftest import post

UA = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"}
TG_SECRET = "tg-secret-Abc123_-"
WA_SECRET = "wa-secret-0123456789"


def ad_site(session, *, bot="shop_bot", first="+74997000000"):
    """A site whose Yandex visitors are "Direct", with its bot and WhatsApp webhook switched on."""
    site = pooled_site(session, 2)
    pool = add_pool(session, site, "Direct", number_range(first, 2))
    source = add_dynamic_source(session, site, "Direct", pool, priority=20,
                                match_rules=[{"field": "utm_source", "op": "equals", "value": "yandex"}])
    session.flush()
    session.add(SiteMessengers(site_id=site.id, telegram_enabled=True, telegram_bot_token="123456:SECRET-TOKEN",
                               telegram_bot_username=bot, telegram_secret=TG_SECRET, whatsapp_enabled=True,
                               whatsapp_secret=WA_SECRET))
    session.commit()
    return site, source


def visit_with_code(url, site, visitor="v1"):
    _, visit, _ = post(f"{url}/v/start", {"k": site.public_key, "visitor_id": visitor, "utm_source": "yandex",
                                          "utm_campaign": "windows"}, UA)
    status, body, headers = post(f"{url}/v/mc", {"k": site.public_key, "sid": visit["sid"]}, UA)
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "http://127.0.0.1"
    return visit["sid"], body


def tg_update(text=None, *, user=777, message_id=1, contact=None, username="ivan"):
    message = {"message_id": message_id, "date": 1700000000, "chat": {"id": user, "type": "private"},
               "from": {"id": user, "is_bot": False, "first_name": "Иван", "username": username}}
    if text is not None:
        message["text"] = text
    if contact is not None:
        message["contact"] = {"phone_number": contact, "user_id": user, "first_name": "Иван"}
    return {"update_id": 1000 + message_id, "message": message}


def send_tg(url, site, update, secret=TG_SECRET, raw=None):
    headers = {"Content-Type": "application/json", "Origin": None}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return post(f"{url}/v/tg/{site.public_key}", update, headers, raw=raw)


def send_wa(url, site, body, secret=WA_SECRET):
    headers = {"Content-Type": "application/json", "Origin": None}
    if secret is not None:
        headers["X-Astertrack-Secret"] = secret
    return post(f"{url}/v/wa/{site.public_key}", body, headers)


def rows(session, model):
    session.rollback()
    return session.scalars(select(model).order_by(model.id)).all()


def test_visit_code_is_short_readable_stable_and_bot_named(session, tracker_url):
    site, _ = ad_site(session)
    sid, body = visit_with_code(tracker_url, site)
    assert body["bot"] == "shop_bot"
    code = body["code"]
    assert len(code) == 6 and set(code) <= set(messengers.ALPHABET) and not set(code) & set("01OILUV")
    again = post(f"{tracker_url}/v/mc", {"k": site.public_key, "sid": sid}, UA)[1]
    assert again["code"] == code  # one code per visit
    _, other = visit_with_code(tracker_url, site, "v2")
    assert other["code"] != code
    assert post(f"{tracker_url}/v/mc", {"k": site.public_key, "sid": "nope"}, UA)[0] == 404


def test_a_site_without_its_bot_or_whatsapp_webhook_gives_no_code(session, tracker_url):
    site, _ = ad_site(session)
    settings = session.get(SiteMessengers, site.id)
    settings.telegram_enabled = settings.whatsapp_enabled = False
    session.commit()
    sid, body = visit_with_code(tracker_url, site)
    assert body == {"code": None, "bot": None, "wa": False}  # nothing put into the visitor's messages
    assert rows(session, VisitorSession)[-1].messenger_code is None
    settings = session.get(SiteMessengers, site.id)
    settings.whatsapp_enabled = True  # WhatsApp only: a code, no bot
    session.commit()
    again = post(f"{tracker_url}/v/mc", {"k": site.public_key, "sid": sid}, UA)[1]
    assert again["wa"] is True and again["bot"] is None and len(again["code"]) == 6


def test_telegram_start_code_makes_a_messenger_lead_with_the_visits_source(session, tracker_url):
    site, source = ad_site(session)
    sid, body = visit_with_code(tracker_url, site)
    status, answer, _ = send_tg(tracker_url, site, tg_update(f"/start {body['code']}"))
    assert status == 200 and answer["ok"] is True
    status, _, _ = send_tg(tracker_url, site, tg_update(f"Сколько стоит окно? (код: {body['code']})", message_id=2))
    assert status == 200
    [enquiry] = rows(session, Enquiry)
    visit = session.scalar(select(VisitorSession).where(VisitorSession.public_id == sid))
    assert (enquiry.channel, enquiry.session_id, enquiry.source_id) == ("messenger", visit.id, source.id)
    assert (enquiry.utm_source, enquiry.utm_campaign) == ("yandex", "windows")
    lead = session.get(Lead, enquiry.lead_id)
    assert (lead.first_channel, lead.source_id, lead.enquiries_count) == ("messenger", source.id, 1)
    texts = [m.text for m in rows(session, MessengerMessage)]
    assert texts == [None, "Сколько стоит окно?"]  # the code is not what managers read
    assert enquiry.message == "Сколько стоит окно?"
    # the phone the person shares later becomes the lead's
    send_tg(tracker_url, site, tg_update(contact="+7 916 123-45-67", message_id=3))
    session.rollback()
    assert session.get(Lead, enquiry.lead_id).phone == "+79161234567"


@pytest.mark.parametrize("kind", ["forged", "other_site", "expired"])
def test_a_code_that_is_not_this_sites_live_visit_makes_an_unattributed_lead(session, tracker_url, kind):
    import datetime as dt

    site, _ = ad_site(session)
    sid, body = visit_with_code(tracker_url, site)  # someone's real visit: never theirs
    code = body["code"]
    if kind == "forged":
        code = next(c for c in ("ABCDEF", "ZZZZZZ") if c != code)
    elif kind == "other_site":
        other, _ = ad_site(session, bot="other_bot", first="+74998000000")
        code = visit_with_code(tracker_url, other, "v9")[1]["code"]
    else:
        visit = session.scalar(select(VisitorSession).where(VisitorSession.public_id == sid))
        visit.last_seen = visit.last_seen - dt.timedelta(days=site.attribution_window_days + 1)
        session.commit()
    status, _, _ = send_tg(tracker_url, site, tg_update(f"/start {code}", user=555))
    assert status == 200
    enquiries = [e for e in rows(session, Enquiry) if e.site_id == site.id]
    assert [(e.channel, e.session_id, e.source_id, e.utm_source) for e in enquiries] == [("messenger", None, None, None)]


def test_wrong_or_missing_secret_stores_nothing(session, tracker_url):
    site, _ = ad_site(session)
    assert send_tg(tracker_url, site, tg_update("hi"), secret=None)[0] == 401
    assert send_tg(tracker_url, site, tg_update("hi"), secret=TG_SECRET + "x")[0] == 403
    assert send_tg(tracker_url, site, tg_update("hi"), secret=WA_SECRET)[0] == 403
    assert send_wa(tracker_url, site, {"id": "m1", "from": "+79161234567"}, secret=None)[0] == 401
    assert send_wa(tracker_url, site, {"id": "m1", "from": "+79161234567"}, secret=TG_SECRET)[0] == 403
    assert post(f"{tracker_url}/v/tg/unknownkey", tg_update("hi"),
                {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Origin": None})[0] == 404
    assert rows(session, Enquiry) == [] and rows(session, MessengerMessage) == []


def test_malformed_and_oversized_updates_are_refused(session, tracker_url):
    site, _ = ad_site(session)
    assert send_tg(tracker_url, site, None, raw=b"{not json")[0] == 400
    assert send_tg(tracker_url, site, None, raw=b"[1, 2]")[0] == 400
    assert send_tg(tracker_url, site, {"message": {"text": "no update id"}})[0] == 400
    assert send_tg(tracker_url, site, {"update_id": 1, "message": {"message_id": "x", "from": {"id": 1},
                                                                  "chat": {"id": 1}}})[0] == 400
    assert send_tg(tracker_url, site, tg_update("x" * 5000))[0] == 400
    assert send_tg(tracker_url, site, tg_update("x" * 70000))[0] == 413
    assert send_wa(tracker_url, site, {"from": "+79161234567"})[0] == 400  # no message id
    assert send_wa(tracker_url, site, {"id": "m1", "from": ["+7916"]})[0] == 400
    # an update that is no person's message is taken and ignored
    assert send_tg(tracker_url, site, {"update_id": 5, "edited_message": {}})[0] == 200
    assert rows(session, Enquiry) == [] and rows(session, MessengerMessage) == []


def test_whatsapp_webhook_is_idempotent_by_message_id(session, tracker_url):
    site, source = ad_site(session)
    _, body = visit_with_code(tracker_url, site)
    message = {"id": "wamid.HBgL1", "from": "+79161234567", "name": "Иван",
               "text": f"Здравствуйте! Хочу окна (code: {body['code']})"}
    first = send_wa(tracker_url, site, message)
    second = send_wa(tracker_url, site, message)
    assert first[0] == second[0] == 200
    assert (first[1]["duplicate"], second[1]["duplicate"]) == (False, True)
    [stored] = rows(session, MessengerMessage)
    assert stored.text == "Здравствуйте! Хочу окна"
    [enquiry] = rows(session, Enquiry)
    assert (enquiry.channel, enquiry.phone, enquiry.name, enquiry.source_id) == (
        "messenger", "+79161234567", "Иван", source.id)
    assert send_wa(tracker_url, site, {**message, "id": "wamid.HBgL2", "text": "<b>ещё</b>"})[0] == 200
    session.rollback()
    assert session.scalar(select(func.count()).select_from(MessengerMessage)) == 2
    assert len(rows(session, Enquiry)) == 1  # one conversation, one enquiry


class _CaptureTelegram(BaseHTTPRequestHandler):
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.path, json.loads(body)))
        payload = json.dumps({"ok": True, "result": True, "description": "Webhook was set"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_set_webhook_reaches_telegram_with_the_url_and_secret(session):
    site, _ = ad_site(session)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CaptureTelegram)
    _CaptureTelegram.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = load_config(environ={}, overrides={"messengers": {
            "telegram_api_url": f"http://127.0.0.1:{server.server_port}", "tracker_url": "https://t.example.ru/ct/"}})
        settings = session.get(SiteMessengers, site.id)
        url = messengers.set_telegram_webhook(settings, site, api_url=config.values["messengers"]["telegram_api_url"],
                                              tracker_url=config.values["messengers"]["tracker_url"])
    finally:
        server.shutdown()
        server.server_close()
    assert url == f"https://t.example.ru/ct/v/tg/{site.public_key}"
    assert _CaptureTelegram.seen == [("/bot123456:SECRET-TOKEN/setWebhook",
                                      {"url": url, "secret_token": TG_SECRET, "allowed_updates": ["message"]})]
    assert settings.telegram_webhook_at is not None


def test_set_webhook_says_why_when_telegram_is_unreachable(session):
    site, _ = ad_site(session)
    with pytest.raises(messengers.TelegramError, match="did not answer"):
        messengers.set_telegram_webhook(session.get(SiteMessengers, site.id), site, api_url="http://127.0.0.1:9",
                                        tracker_url="https://t.example.ru", timeout=2)
    with pytest.raises(messengers.TelegramError, match="tracker_url"):
        messengers.set_telegram_webhook(session.get(SiteMessengers, site.id), site, api_url="http://127.0.0.1:9",
                                        tracker_url="")


def test_split_code_reads_what_people_send():
    assert messengers.split_code("/start K7M2QX") == ("", "K7M2QX")
    assert messengers.split_code("/start@shop_bot k7m2qx") == ("", "K7M2QX")
    assert messengers.split_code("Здравствуйте (код: K7M2QX)") == ("Здравствуйте", "K7M2QX")
    assert messengers.split_code("Hello (code: K7M2QX) thanks") == ("Hello thanks", "K7M2QX")
    assert messengers.split_code("/start") == ("", None)
    assert messengers.split_code("/start ../../etc") == ("", None)
    assert messengers.split_code("just text") == ("just text", None)
