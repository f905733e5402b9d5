"""Phone numbers: parse anything people and carriers write into E.164, and format for display.

Parsing is delegated to ``phonenumbers`` (Google's libphonenumber metadata); we add the
habits of Russian PBXs: ``8`` as the trunk prefix and 11-digit ``7XXXXXXXXXX`` without ``+``.
"""

from __future__ import annotations

import re

import phonenumbers

MAX_INPUT = 64
_ALLOWED = re.compile(r"^[0-9+()\-.\s/]+$")


class PhoneNumberError(ValueError):
    """The input is not a phone number we can use; the message says why."""


def normalize(raw: str | None, region: str = "RU") -> str:
    """Return the E.164 form (``+74951234567``) or raise PhoneNumberError."""
    if raw is None:
        raise PhoneNumberError("no phone number given")
    text = str(raw).strip()
    if not text:
        raise PhoneNumberError("empty phone number")
    if len(text) > MAX_INPUT:
        raise PhoneNumberError(f"phone number too long ({len(text)} characters)")
    if not _ALLOWED.match(text):
        raise PhoneNumberError(f"not a phone number: {text!r}")
    digits = re.sub(r"\D", "", text)
    if not 3 <= len(digits) <= 15:
        raise PhoneNumberError(f"a phone number has 3 to 15 digits, {text!r} has {len(digits)}")
    candidates = []
    if text.startswith("+"):
        candidates.append("+" + digits)
    elif text.startswith("00"):
        candidates.append("+" + digits[2:])
    else:
        candidates.append(text)
        # Carriers often send the full international number without "+" (74951234567).
        candidates.append("+" + digits)
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    raise PhoneNumberError(f"not a valid phone number: {text!r}")


def try_normalize(raw: str | None, region: str = "RU") -> str | None:
    """E.164 or None, for places where an unusable caller id is normal (anonymous, unknown)."""
    try:
        return normalize(raw, region)
    except PhoneNumberError:
        return None


def format_display(e164: str, template: str | None) -> str:
    """Fill a site's template such as ``8 (XXX) XXX-XX-XX`` with the number's trailing digits.

    The template's X count decides how many digits it shows; the rest of the template
    (country prefix, brackets, dashes) is kept as written.  A template with more X's than the
    number has digits, or none at all, falls back to the international format.
    """
    digits = re.sub(r"\D", "", e164)
    slots = template.count("X") if template else 0
    if not template or slots == 0 or slots > len(digits):
        try:
            parsed = phonenumbers.parse("+" + digits, None)
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        except phonenumbers.NumberParseException:
            return e164
    tail = iter(digits[len(digits) - slots:])
    return "".join(next(tail) if ch == "X" else ch for ch in template)
