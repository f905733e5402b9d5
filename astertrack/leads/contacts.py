"""A lead's contact data as people type it: the phone in E.164 and the e-mail lower-cased, each kept
as given and flagged when it does not parse (an enquiry is never lost to a typo), free text trimmed."""

from __future__ import annotations

import re
from dataclasses import dataclass

from astertrack.leads.errors import LeadError
from astertrack.phones import PhoneNumberError, normalize

PHONE_RAW_MAX = 64
EMAIL_MAX = 254
NAME_MAX = 200
MESSAGE_MAX = 10_000
PAGE_URL_MAX = 2048
# Loose on purpose: one "@", something before it, a dotted domain after it, no spaces.  Mail servers
# accept far more than any strict pattern; the point is to catch typos such as "ivan.mail.ru".
_EMAIL = re.compile(r"^[^@\s<>\"']+@[^@\s<>\"']+\.[^@\s<>\"'.]{2,}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ContactError(LeadError):
    """Contact data we cannot keep (an e-mail that is not one); ``field`` names the input."""


@dataclass(frozen=True)
class Phone:
    """A phone as given: ``e164`` when it parses, ``raw`` as typed, ``invalid`` when it did not parse."""

    e164: str | None
    raw: str | None
    invalid: bool


def clean_text(value: str | None, limit: int) -> str | None:
    """Stripped text without control characters, cut to ``limit``; None for nothing."""
    if value is None:
        return None
    text = _CONTROL.sub("", str(value)).strip()
    return text[:limit] or None


def normalize_phone(raw: str | None, region: str = "RU") -> Phone:
    """The phone in E.164 when it parses; otherwise kept as given (cut to 64 characters), flagged."""
    text = clean_text(raw, PHONE_RAW_MAX)
    if text is None:
        return Phone(None, None, False)
    try:
        return Phone(normalize(text, region), text, False)
    except PhoneNumberError:
        return Phone(None, text, True)


@dataclass(frozen=True)
class Email:
    """An e-mail as given: ``address`` (lower-cased) when it looks like one, ``raw`` as typed (cut to
    its column), ``invalid`` when it did not: kept to read, never a key to find the lead by."""

    address: str | None
    raw: str | None
    invalid: bool


def parse_email(raw: str | None) -> Email:
    """Like :func:`normalize_email`, but a text that is not an address is kept and flagged."""
    try:
        address = normalize_email(raw)
    except ContactError:
        return Email(None, clean_text(raw, EMAIL_MAX), True)
    return Email(address, address, False)


def normalize_email(raw: str | None) -> str | None:
    """The e-mail lower-cased (the whole address: no mailbox treats case differently in practice),
    or None when empty; ContactError when it is not an address at all."""
    text = clean_text(raw, EMAIL_MAX + 1)
    if text is None:
        return None
    if len(text) > EMAIL_MAX:
        raise ContactError("email", f"an e-mail address has at most {EMAIL_MAX} characters")
    if not _EMAIL.match(text):
        raise ContactError("email", f"not an e-mail address: {text!r}")
    return text.lower()
