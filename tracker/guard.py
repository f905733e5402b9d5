"""Defences for a public endpoint every page view of every customer site hits.

Everything the browser sends is attacker-controlled: bodies are size-capped before they are
read, must be UTF-8 JSON objects, and each client IP gets a per-minute budget.  The rate
limiter is in-process (per gunicorn worker), which is enough to blunt a single abusive
client without a network round trip on every request.
"""

from __future__ import annotations

import json
import threading
import time
from typing import IO, Any


class BadRequest(Exception):
    """The request is refused; ``status`` and ``message`` go back to the client as JSON."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def read_json_body(stream: IO[bytes], content_length: int | None, max_bytes: int) -> dict[str, Any]:
    """Read at most ``max_bytes`` of the body and parse it as a UTF-8 JSON object.

    ``stream`` must be safe to read to its end (Flask's ``request.stream`` is).
    """
    if content_length is not None and content_length > max_bytes:
        raise BadRequest(413, f"request body too large (limit {max_bytes} bytes)")
    body = stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise BadRequest(413, f"request body too large (limit {max_bytes} bytes)")
    if not body:
        raise BadRequest(400, "empty request body: expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"request body is not valid UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text, parse_int=_bounded_int)
    except json.JSONDecodeError as exc:
        raise BadRequest(400, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadRequest(400, "invalid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "expected a JSON object")
    return data


MAX_INT_DIGITS = 40  # no field of ours needs more; Python refuses over 4300 and spends quadratic time below


def _bounded_int(digits: str) -> int:
    """JSON integers, refused with a message past ``MAX_INT_DIGITS`` (a 5,000-digit number was a
    ValueError from Python's conversion limit: a 500 and a traceback per request)."""
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise BadRequest(400, f"invalid JSON: a number with more than {MAX_INT_DIGITS} digits")
    return int(digits)


def client_ip(environ: dict[str, Any], trust_forwarded_for: bool) -> str:
    """The visitor's address; behind our own reverse proxy the last X-Forwarded-For hop
    (the one the proxy appended), never the client-supplied leftmost ones."""
    if trust_forwarded_for:
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-1][:45]
    return (environ.get("REMOTE_ADDR") or "")[:45]


class RateLimiter:
    """Fixed one-minute windows per key; ``limit`` 0 turns it off."""

    def __init__(self, limit: int, window: float = 60.0, max_keys: int = 100_000):
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._counts: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> tuple[bool, int]:
        """(allowed, seconds until the window resets)."""
        if self.limit <= 0:
            return True, 0
        now = time.monotonic() if now is None else now
        with self._lock:
            start, count = self._counts.get(key, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            count += 1
            if len(self._counts) >= self.max_keys and key not in self._counts:
                self._prune(now)
            self._counts[key] = (start, count)
        return count <= self.limit, max(1, int(self.window - (now - start)))

    def _prune(self, now: float) -> None:
        stale = [k for k, (start, _) in self._counts.items() if now - start >= self.window]
        for k in stale:
            del self._counts[k]
        if len(self._counts) >= self.max_keys:  # a flood of distinct addresses: start over
            self._counts.clear()


def origin_allowed(origin: str, domains: tuple[str, ...]) -> bool:
    """``https://www.example.ru`` is allowed by ``www.example.ru`` or ``*.example.ru``."""
    from urllib.parse import urlsplit

    try:
        host = (urlsplit(origin).hostname or "").lower()
    except ValueError:
        return False
    if not host:
        return False
    for domain in domains:
        domain = domain.strip().lower()
        if domain.startswith("*."):
            if host.endswith(domain[1:]) or host == domain[2:]:
                return True
        elif host == domain:
            return True
    return False


# ---------------------------------------------------------------- web forms

# Form submissions one client address may send a minute (within ``rate_limit_per_minute``): a
# person sends one, an office behind one NAT a few; a spammer's flood of fake leads stops here.
FORMS_PER_MINUTE = 20

# What ``navigator.sendBeacon`` and ``fetch`` send without a CORS preflight (a string is
# text/plain, URLSearchParams urlencoded, FormData multipart); application/json is answered
# too, after its preflight.
FORM_CONTENT_TYPES = ("text/plain", "application/json", "application/x-www-form-urlencoded", "multipart/form-data")


def read_form_body(stream: IO[bytes], content_length: int | None, max_bytes: int,
                   content_type: str | None) -> dict[str, Any]:
    """A web form's fields as a dict of strings (JSON values as sent), from any body
    ``FORM_CONTENT_TYPES`` allows; capped like every body, the first value of a repeated field."""
    from werkzeug.http import parse_options_header

    mimetype, options = parse_options_header(content_type or "text/plain")
    mimetype = mimetype.lower()
    if mimetype not in FORM_CONTENT_TYPES:
        raise BadRequest(415 if mimetype else 400, f"unsupported content type {mimetype[:60]!r}: send JSON "
                         "(text/plain or application/json) or form fields (urlencoded or multipart)")
    if mimetype in ("text/plain", "application/json"):
        return read_json_body(stream, content_length, max_bytes)
    if content_length is not None and content_length > max_bytes:
        raise BadRequest(413, f"request body too large (limit {max_bytes} bytes)")
    body = stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise BadRequest(413, f"request body too large (limit {max_bytes} bytes)")
    if not body:
        raise BadRequest(400, "empty request body: expected the form's fields")
    if mimetype == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qsl

        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict",
                              max_num_fields=200)
        except UnicodeDecodeError as exc:
            raise BadRequest(400, f"form fields are not valid UTF-8 (byte {exc.start})") from None
        except ValueError:
            raise BadRequest(400, "too many form fields (limit 200)") from None
    else:
        pairs = _multipart_pairs(body, options.get("boundary", ""))
    fields: dict[str, Any] = {}
    for name, value in pairs:
        fields.setdefault(name, value)
    return fields


def _multipart_pairs(body: bytes, boundary: str) -> list[tuple[str, str]]:
    """A multipart body's text fields (files are not read: a form enquiry has none)."""
    import io

    from werkzeug.formparser import MultiPartParser

    if not boundary:
        raise BadRequest(400, "multipart/form-data without a boundary")
    parser = MultiPartParser(max_form_memory_size=len(body) + 1, max_form_parts=200)
    try:
        form, _files = parser.parse(io.BytesIO(body), boundary.encode("latin-1", "replace"), len(body))
    except ValueError as exc:  # werkzeug's malformed-body errors are ValueErrors
        raise BadRequest(400, f"malformed multipart body: {str(exc)[:120]}") from None
    except Exception as exc:  # RequestEntityTooLarge and the like
        raise BadRequest(400, f"malformed multipart body: {type(exc).__name__}") from None
    return list(form.items(multi=True))
