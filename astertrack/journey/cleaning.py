"""Cleaning what the browser reports before it is stored: everything here is attacker-controlled.

Pure functions (no database): page URLs keep only the query parameters attribution reads (utm_*,
click ids) plus those the site allows, never a fragment or user:password; text loses NULs, control
characters and lone surrogates and is capped to its column; an address can be anonymised.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Click ids of the ad and analytics platforms (Google, Yandex, Meta, Microsoft, TikTok, Openstat...).
CLICK_IDS = frozenset({"gclid", "gbraid", "wbraid", "dclid", "yclid", "ysclid", "fbclid", "msclkid",
                       "ttclid", "twclid", "li_fat_id", "vkclid", "_openstat"})
URL_MAX = 2048
TITLE_MAX = 300
TARGET_MAX = 500
PARAM_NAME_MAX = 64
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_SPACE = re.compile(r"\s+")


def clean_text(value: Any, limit: int) -> str | None:
    """A storable one-line string or None: no NULs or control characters (PostgreSQL refuses NUL,
    a log line or CSV breaks on the others), no lone surrogates, whitespace runs as one space,
    at most ``limit`` characters.  Anything but a string or a number is dropped."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value[: limit * 4]  # never work on megabytes
    value = value.encode("utf-8", "replace").decode("utf-8")
    value = _SPACE.sub(" ", _CONTROL.sub(" ", value)).strip()[:limit]
    return value or None


def allowed_params(extra: Iterable[Any] | None) -> frozenset[str]:
    """A site's extra query parameters (``Site.query_params_allowed``), lower-cased, junk dropped."""
    out = set()
    for name in extra or ():
        if isinstance(name, str) and 0 < len(name.strip()) <= PARAM_NAME_MAX:
            out.add(name.strip().lower())
    return frozenset(out)


def keep_param(name: str, allowed: frozenset[str] = frozenset()) -> bool:
    lowered = name.lower()
    return lowered.startswith("utm_") or lowered in CLICK_IDS or lowered in allowed


def clean_url(url: Any, allowed: frozenset[str] = frozenset(), limit: int = URL_MAX) -> str | None:
    """``url`` without secrets: the query cut to utm_*, click ids and ``allowed``; no fragment; no
    user:password; scheme and host lower-cased.  None for anything but an http(s) address."""
    if not isinstance(url, str) or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip()[: limit * 4])
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    kept = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=False, max_num_fields=None)
            if keep_param(name, allowed)]
    cleaned = urlunsplit((parts.scheme.lower(), netloc, parts.path, urlencode(kept), ""))
    return clean_text(cleaned, limit)


_APP_LINK = re.compile(r"^(tel|sms|viber|whatsapp|tg|skype|mailto):", re.IGNORECASE)


def clean_target(value: Any) -> str | None:
    """What an action was on: a web link without its query (a wa.me link's ``?text=`` is what the
    visitor typed), an app link (tel:, viber:, whatsapp:...) up to its parameters, or an element's
    text, capped."""
    text = clean_text(value, TARGET_MAX * 4)
    if text is None:
        return None
    if _APP_LINK.match(text):
        return clean_text(text.split("?", 1)[0], TARGET_MAX)
    if re.match(r"^https?://", text, re.IGNORECASE):
        return clean_url(text, limit=TARGET_MAX)
    return clean_text(text, TARGET_MAX)


def anonymise_ip(ip: str | None) -> str | None:
    """The address with its host part zeroed: the last octet of IPv4, the last 80 bits of IPv6
    (an IPv4-mapped IPv6 address as IPv4).  Something that is not an address is dropped."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Address(int(address) & 0xFFFFFF00))
    return str(ipaddress.IPv6Address(int(address) & ~((1 << 80) - 1) & ((1 << 128) - 1)))
