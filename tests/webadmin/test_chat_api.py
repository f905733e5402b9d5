"""``/api/v1/chats`` on both databases: a page of chats with their state and the visit's
attribution, filters, a site's token limited to its site, a chat's messages by number with the
visitor's text as text, every list one query whatever its length."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event

from astertrack.chat import conversations as chats
from astertrack.db.models import Site
from astertrack.integrations import api_tokens
from tests.webadmin.chat_data import HOSTILE, make_chats
from webadmin.api.openapi import PREFIX
from webadmin.db import EXTENSION


@pytest.fixture
def talk(db, data):
    made = make_chats(db, data)
    made.tokens = {name: api_tokens.create(db, name, site, "read")[1]
                   for name, site in (("every", None), ("shop", data.site), ("other", made.other_site))}
    db.commit()
    return made


def api(client, token, path, **query):
    return client.get(PREFIX + path, headers={"Authorization": f"Bearer {token}"}, query_string=query or None)


def items(response) -> list[dict]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["items"]


def test_a_chat_with_its_state_and_the_visits_attribution(client, data, talk):
    chat = api(client, talk.tokens["every"], f"/chats/{talk.ivan}").get_json()
    assert {key: chat[key] for key in ("site_id", "status", "closed_by", "manager_id", "manager", "phone", "name",
                                       "session_id", "source_id", "source", "utm_medium", "utm_campaign",
                                       "keyword", "page_url", "lead_id")} == {
        "site_id": data.site, "status": "closed", "closed_by": "manager", "manager_id": data.boris,
        "manager": "Boris", "phone": "+79161234567", "name": "Ivan", "session_id": data.visit,
        "source_id": data.yandex, "source": "Yandex Direct", "utm_medium": "cpc", "utm_campaign": "winter-sale",
        "keyword": "buy sofa", "page_url": "https://shop.example/sofas", "lead_id": talk.ivan_lead}
    assert chat["seq"] == 6 and chat["manager_read_seq"] == 3  # up to its own reply
    assert dt.datetime.fromisoformat(chat["first_reply_at"]) == talk.start + dt.timedelta(minutes=2)
    assert not {"ip", "token_hash", "rev"} & set(chat)  # the visitor's network identity and token stay here


def test_the_list_newest_first_with_its_filters_and_pages(client, data, talk):
    every = talk.tokens["every"]
    assert [c["id"] for c in items(api(client, every, "/chats"))] == [talk.elsewhere, talk.later, talk.ivan]
    first = api(client, every, "/chats", limit=2).get_json()
    second = api(client, every, "/chats", limit=2, cursor=first["next_cursor"]).get_json()
    assert [c["id"] for c in first["items"] + second["items"]] == [talk.elsewhere, talk.later, talk.ivan]
    assert second["next_cursor"] is None
    assert [c["id"] for c in items(api(client, every, "/chats", status="closed"))] == [talk.ivan]
    assert [c["id"] for c in items(api(client, every, "/chats", manager_id=data.boris))] == [talk.ivan]
    assert [c["id"] for c in items(api(client, every, "/chats", site_id=talk.other_site))] == [talk.elsewhere]
    since = (talk.start + dt.timedelta(minutes=5)).isoformat()
    until = (talk.start + dt.timedelta(minutes=11)).isoformat()
    assert [c["id"] for c in items(api(client, every, "/chats", **{"from": since, "to": until}))] == [talk.later]
    bad = api(client, every, "/chats", status="lost")
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_parameter"


def test_a_sites_token_sees_only_its_sites_chats(client, data, talk):
    shop, other = talk.tokens["shop"], talk.tokens["other"]
    assert {c["site_id"] for c in items(api(client, shop, "/chats"))} == {data.site}
    assert [c["id"] for c in items(api(client, other, "/chats"))] == [talk.elsewhere]
    for path in (f"/chats/{talk.ivan}", f"/chats/{talk.ivan}/messages"):
        assert api(client, shop, path).status_code == 200
        refused = api(client, other, path)
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "wrong_site", path
    refused = api(client, shop, "/chats", site_id=talk.other_site)
    assert refused.status_code == 403
    for path in ("/chats/999999", "/chats/999999/messages"):
        missing = api(client, talk.tokens["every"], path)
        assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"


def test_messages_by_number_with_the_visitors_text_as_text(client, data, talk):
    every = talk.tokens["every"]
    answer = api(client, every, f"/chats/{talk.ivan}/messages").get_json()
    lines = answer["items"]
    assert answer["next_after"] is None
    assert [(m["seq"], m["author"], m["kind"]) for m in lines] == [
        (1, "visitor", "text"), (2, "system", "claimed"), (3, "manager", "text"), (4, "system", "transferred"),
        (5, "system", "contact"), (6, "system", "closed")]
    assert lines[0]["text"] == HOSTILE and lines[0]["manager_id"] is None
    assert (lines[2]["text"], lines[2]["manager_id"]) == ("Hello! Which sofa?", data.anna)
    assert lines[3]["meta"]["from"] == "Anna" and lines[3]["meta"]["to"] == "Boris"
    assert lines[4]["meta"]["phone"] == "+79161234567"
    page = api(client, every, f"/chats/{talk.ivan}/messages", after=1, limit=2).get_json()
    assert [m["seq"] for m in page["items"]] == [2, 3] and page["next_after"] == 3
    rest = api(client, every, f"/chats/{talk.ivan}/messages", after=page["next_after"]).get_json()
    assert [m["seq"] for m in rest["items"]] == [4, 5, 6] and rest["next_after"] is None
    for bad in ({"after": -1}, {"limit": 0}, {"limit": 501}, {"after": "x"}):
        refused = api(client, every, f"/chats/{talk.ivan}/messages", **bad)
        assert refused.status_code == 400, bad


def test_a_page_of_chats_is_a_constant_number_of_queries(app, client, db, data, talk):
    site = db.get(Site, data.site)
    start = talk.start
    for i in range(60):
        chat, _ = chats.start(db, site, at=start + dt.timedelta(seconds=i))
        chats.post(db, chat, "visitor", f"hi {i}", at=start + dt.timedelta(seconds=i))
    db.commit()
    engine = app.extensions[EXTENSION].kw["bind"]
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    api(client, talk.tokens["every"], "/chats", limit=1)  # the token's last use is written now, not below
    event.listen(engine, "before_cursor_execute", count)
    try:
        cost = {}
        for limit in (3, 60):
            statements.clear()
            assert len(items(api(client, talk.tokens["every"], "/chats", limit=limit))) == limit
            cost[limit] = len(statements)
        assert cost[3] == cost[60], cost
    finally:
        event.remove(engine, "before_cursor_execute", count)
