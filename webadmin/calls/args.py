"""The review filters (tag, handled) read from the query string, shared by the call log and the
reports so a report row's link opens the log with the same narrowing."""

from __future__ import annotations

from flask import request

from astertrack.leads import CHANNELS
from webadmin.filters import arg_str

HANDLED_CHOICES = ("yes", "no")


def handled_arg() -> bool | None:
    """``handled=yes`` / ``handled=no``; anything else means both."""
    raw = request.args.get("handled", "")
    return {"yes": True, "no": False}.get(raw)


def tag_arg() -> str | None:
    return arg_str("tag", 80)


def lead_channel_arg() -> str | None:
    """``lead_channel=`` one of the enquiry channels (a call, a callback...); anything else means all."""
    value = request.args.get("lead_channel", "")
    return value if value in CHANNELS else None


def review_form(tag: str | None, handled: bool | None) -> dict[str, str]:
    """The review filters as the filter form and the links write them."""
    return {"tag": tag or "", "handled": {True: "yes", False: "no"}.get(handled, "")}
