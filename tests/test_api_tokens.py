"""astertrack.integrations.api_tokens: the header parsing and permission rules (pure), and tokens
created, recognised, used and revoked in the database (both backends)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import select

from astertrack.db.models import ApiToken
from astertrack.integrations import api_tokens
from astertrack.samples.factories import add_site


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer at_abc", "at_abc"), ("bearer  at_abc ", "at_abc"), ("Basic at_abc", None), ("Bearer", None),
    ("Bearer ", None), ("", None), (None, None), ("Bearer a b", None), ("Bearer " + "x" * 201, None),
    ("at_abc", None)])
def test_only_a_bearer_header_yields_a_token(header, token):
    assert api_tokens.bearer(header) == token


def test_a_token_reaches_its_own_site_and_writes_only_with_the_write_scope():
    one_site = ApiToken(site_id=3, scope="write")
    every_site = ApiToken(site_id=None, scope="write")
    reader = ApiToken(site_id=None, scope="read")
    assert api_tokens.refusal(one_site, 3, write=True) is None
    assert api_tokens.refusal(one_site, 4, write=False) == api_tokens.WRONG_SITE
    assert api_tokens.refusal(one_site, None, write=False) == api_tokens.WRONG_SITE
    assert api_tokens.refusal(every_site, 4, write=True) is None
    assert api_tokens.refusal(reader, 4, write=False) is None
    assert api_tokens.refusal(reader, 4, write=True) == api_tokens.READ_ONLY


def test_new_tokens_are_random_marked_and_hashed_as_sha256():
    first, second = api_tokens.new_token(), api_tokens.new_token()
    assert first != second and first.startswith("at_") and len(first) > 40
    assert api_tokens.token_hash(first) == hashlib.sha256(first.encode()).hexdigest()
    assert api_tokens.token_prefix(first) == first[:10]


def test_a_token_is_stored_as_its_hash_recognised_and_revoked(session):
    site = add_site(session, "Shop")
    row, plain = api_tokens.create(session, "  CRM  ", site.id, "write", user_id=None)
    session.commit()
    stored = session.scalars(select(ApiToken)).one()
    assert stored.name == "CRM" and stored.site_id == site.id and stored.scope == "write"
    assert stored.token_hash == api_tokens.token_hash(plain) and plain not in (stored.token_hash, stored.prefix)
    assert plain.startswith(stored.prefix) and stored.last_used_at is None

    start = dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.UTC)
    assert api_tokens.authenticate(session, plain, now=start).id == row.id
    assert stored.last_used_at == start
    # used again within the minute: last_used_at is not rewritten on every request
    api_tokens.authenticate(session, plain, now=start + dt.timedelta(seconds=30))
    assert stored.last_used_at == start
    api_tokens.authenticate(session, plain, now=start + dt.timedelta(minutes=2))
    assert stored.last_used_at == start + dt.timedelta(minutes=2)
    assert api_tokens.authenticate(session, plain + "x") is None
    assert api_tokens.authenticate(session, stored.prefix) is None
    assert api_tokens.authenticate(session, None) is None

    assert api_tokens.revoke(session, stored) is True
    session.commit()
    assert api_tokens.authenticate(session, plain) is None
    assert api_tokens.revoke(session, stored) is False
    assert session.scalars(select(ApiToken)).one().revoked_at is not None  # kept, never deleted


def test_bad_names_and_scopes_are_refused(session):
    with pytest.raises(ValueError, match="scope"):
        api_tokens.create(session, "CRM", None, "admin")
    with pytest.raises(ValueError, match="name"):
        api_tokens.create(session, "   ", None, "read")
    with pytest.raises(ValueError, match="name"):
        api_tokens.create(session, "x" * 101, None, "read")
    assert session.scalars(select(ApiToken)).all() == []
