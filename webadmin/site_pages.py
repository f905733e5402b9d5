"""What every per-site settings page shares (conversions, messengers, the widget): the site its
URL names, and the page's index, which opens the first live site."""

from __future__ import annotations

from flask import abort, flash, redirect, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from astertrack.db.models import Site
from webadmin.db import get_session


def site_or_404(site_id: int) -> Site:
    site = get_session().get(Site, site_id)
    if site is None:
        abort(404)
    return site


def first_site_page(endpoint: str):
    """A redirect to ``endpoint`` for the first live site by name; to the settings with a word
    when there is no site yet."""
    first = get_session().scalar(select(Site.id).where(Site.archived_at.is_(None)).order_by(Site.name).limit(1))
    if first is None:
        flash(_("Add a site first."), "error")
        return redirect(url_for("settings.index"))
    return redirect(url_for(endpoint, site_id=first))
