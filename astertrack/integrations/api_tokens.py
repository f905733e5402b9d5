"""API tokens a CRM sends as ``Authorization: Bearer <token>``: made once and shown once, kept only
as their SHA-256 (a stolen database does not hand out working tokens), recognised in lists by a
short prefix, limited to one site or all and to reading or writing, revoked but never deleted.

The parsing, hashing and permission rules are plain functions; the few database steps take a
session and leave the commit to the caller."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from astertrack.db.models import ApiToken
from astertrack.db.types import utcnow

SCOPES = ("read", "write")
TOKEN_MARK = "at_"  # every astertrack token starts so, which secret scanners and people recognise
PREFIX_LENGTH = 10  # TOKEN_MARK and the first random characters: shown in lists, never enough to use
MAX_TOKEN_LENGTH = 200  # anything longer is not ours: refused before hashing
NAME_MAX = 100
LAST_USED_EVERY = dt.timedelta(minutes=1)  # last_used_at is written at most this often per token

# Why a token may not do what it asks (the API's error codes)
WRONG_SITE = "wrong_site"
READ_ONLY = "read_only"


def new_token() -> str:
    """A fresh token: the mark and 32 random bytes (256 bits), URL-safe."""
    return TOKEN_MARK + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_prefix(token: str) -> str:
    return token[:PREFIX_LENGTH]


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, None for anything else."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or len(value) > MAX_TOKEN_LENGTH or " " in value:
        return None
    return value


def refusal(token: ApiToken, site_id: int | None, write: bool) -> str | None:
    """Why ``token`` may not act on a lead of ``site_id`` (read, or write when ``write``): None when
    it may.  A token of one site reaches only that site's leads; a read token never writes."""
    if token.site_id is not None and site_id != token.site_id:
        return WRONG_SITE
    if write and token.scope != "write":
        return READ_ONLY
    return None


def create(session: Session, name: str, site_id: int | None, scope: str,
           user_id: int | None = None) -> tuple[ApiToken, str]:
    """Add a token row and return it with the plain token, which is never stored (show it once)."""
    if scope not in SCOPES:
        raise ValueError(f"unknown token scope {scope!r} (known: {', '.join(SCOPES)})")
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise ValueError(f"a token name has 1 to {NAME_MAX} characters")
    plain = new_token()
    row = ApiToken(name=name, token_hash=token_hash(plain), prefix=token_prefix(plain), scope=scope,
                   site_id=site_id, user_id=user_id, created_at=utcnow())
    session.add(row)
    session.flush()
    return row, plain


def authenticate(session: Session, presented: str | None, now: dt.datetime | None = None) -> ApiToken | None:
    """The live (not revoked) token whose hash matches ``presented``, with ``last_used_at`` moved
    on (at most once a minute; the caller commits); None for a missing, unknown or revoked one."""
    if not presented or len(presented) > MAX_TOKEN_LENGTH:
        return None
    digest = token_hash(presented)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    # the lookup is by an index on the hash; compare again in constant time all the same
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
        return None
    now = now or utcnow()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        row.last_used_at = now
    return row


def revoke(session: Session, row: ApiToken, now: dt.datetime | None = None) -> bool:
    """Revoke ``row`` (kept, never deleted); False when it already was."""
    if row.revoked_at is not None:
        return False
    row.revoked_at = now or utcnow()
    return True
