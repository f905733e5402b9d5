"""The lead list: filters, pages, the streamed CSV export."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import render_template, request
from flask_login import current_user

from astertrack.leads import CHANNELS, STATES
from webadmin.db import get_session
from webadmin.exports import stream_csv
from webadmin.filters import arg_int, choices
from webadmin.leads import bp, listing
from webadmin.security import ROLES, roles_required

PAGE_SIZE = 50


@bp.get("/")
@roles_required(*ROLES)
def index():
    f, form = listing.lead_filter()
    if not current_user.is_staff:  # a manager's list is their own leads: no site/source/manager filters
        f = listing.LeadFilter(**{**f.__dict__, "site_id": None, "source_id": None, "manager_id": None})
    if request.args.get("format") == "csv":
        return stream_csv(f"leads-{form['from']}-{form['to']}.csv", listing.CSV_HEADER,
                          lambda db: listing.csv_rows(db, f))
    db = get_session()
    total = listing.count(db, f)
    pages = max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    number = min(max(arg_int("page") or 1, 1), pages)
    args = {k: v for k, v in request.args.items() if k not in ("page", "format") and v}
    return render_template("leads/list.html", rows=listing.page(db, f, number, PAGE_SIZE), form=form,
                           choices=choices() if current_user.is_staff else None, states=STATES, channels=CHANNELS,
                           total=total, page=number, pages=pages, args=args,
                           csv_url=f"{request.path}?{urlencode({**args, 'format': 'csv'})}")
