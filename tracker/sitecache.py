"""Per-process cache of site routing snapshots.

Every request needs the site's settings and source rules; loading them from the database
each time would double the queries of the hot path.  Snapshots live for
``[tracker] site_cache_seconds`` (admin changes show up within that time); unknown keys
are cached too, so a flood of random keys cannot turn into a flood of queries.

Each site's journey privacy settings (``Privacy``: IP anonymisation, query parameters its page URLs
keep) come with its snapshot, so the page-view path reads no settings from the database either.

A CORS preflight carries no body, so no site key: it is answered from the domains of every
site, cached the same way (one query per ``site_cache_seconds``, whatever the flood).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from astertrack.db.models import Site
from astertrack.dni.sources import SiteRouting, load_site_routing
from astertrack.journey.cleaning import allowed_params
from astertrack.leads import widget as site_widget
from tracker.guard import origin_allowed


class Privacy(NamedTuple):
    anonymise_ip: bool = False
    allowed_params: frozenset[str] = frozenset()  # besides utm_* and click ids


NO_PRIVACY = Privacy()


class SiteCache:
    def __init__(self, session_factory: sessionmaker[Session], ttl: float, max_entries: int = 10_000):
        self.session_factory = session_factory
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, SiteRouting | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._domains: tuple[float, tuple[str, ...]] | None = None
        self._privacy: dict[int, Privacy] = {}
        self._widget: dict[int, int] = {}  # site id -> the widget's revision when enabled, else 0

    def get(self, public_key: str) -> SiteRouting | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(public_key)
            if entry is not None and now - entry[0] < self.ttl:
                return entry[1]
        with self.session_factory() as db:
            site = load_site_routing(db, public_key)
            privacy = None
            if site is not None:
                row = db.execute(select(Site.anonymise_ip, Site.query_params_allowed).where(Site.id == site.id)).first()
                privacy = Privacy(bool(row.anonymise_ip), allowed_params(row.query_params_allowed)) if row else None
                widget_rev = site_widget.enabled_revision(db, site.id)
        with self._lock:
            if privacy is not None:
                self._privacy[site.id] = privacy
                self._widget[site.id] = widget_rev
            self._entries[public_key] = (now, site)
            self._entries.move_to_end(public_key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return site

    def privacy(self, site_id: int) -> Privacy:
        """The journey privacy settings of a site ``get`` returned (read with its snapshot)."""
        return self._privacy.get(site_id, NO_PRIVACY)

    def widget_revision(self, site_id: int) -> int:
        """The site's widget revision when it is on (read with its snapshot), else 0."""
        return self._widget.get(site_id, 0)

    def origin_known(self, origin: str) -> bool:
        """Whether ``origin`` is allowed by the domains of any site (for a preflight)."""
        now = time.monotonic()
        cached = self._domains
        if cached is None or now - cached[0] >= self.ttl:
            with self.session_factory() as db:
                domains = tuple(str(domain) for row in db.scalars(select(Site.domains).where(Site.archived_at.is_(None)))
                                for domain in (row or ()))
            cached = self._domains = (now, domains)
        return origin_allowed(origin, cached[1])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()  # (privacy settings are replaced when the site is read again)
            self._domains = None
