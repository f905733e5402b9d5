"""Both languages, no raw codes (issue #21 §4): a real Chromium crawls every admin page reachable by
links from the start page, as admin, supervisor and manager, in English and in Russian, on seeded
data with calls of every outcome, and fails on

- a raw code: a value of the core's vocabularies (outcomes, missed reasons, device states,
  strategies...) as a whole word of the visible text,
- a column name (``site_id``-style snake_case) in the visible text,
- an untranslated message: a text node of a Russian page that the English page of the same URL
  shows too, with a word that is neither data nor a word the Russian catalog keeps in Latin,
- a wrong plural ("1 earlier calls", "1 звонков"), from the catalog's own plural entries.

Nothing here lists page text by hand: the codes come from the core, the allowed words from the
seeded database and the Russian catalog.  Text marked ``translate="no"`` (the raw AMI timeline,
UTM parameter names) is what the page itself declares not to translate.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from pathlib import Path
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
from babel.messages.pofile import read_po
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import JSON, String, Text, select

from astertrack.callflow import outcomes
from astertrack.callflow.state_machine import _EXTENSION_STATES
from astertrack.db.models import Base, Call, CallerProfile, Manager, RoutingRule
from astertrack.db.types import utcnow
from astertrack.dni import allocation, sources
from astertrack.routing import attribution, rules
from astertrack.samples.factories import add_group, add_managers, add_rule
from tests.webadmin.browser import ServerThread
from tests.webadmin.seed import PASSWORD
from webadmin import security

pytestmark = pytest.mark.browser

CATALOG = Path(__file__).resolve().parents[2] / "webadmin" / "translations" / "ru" / "LC_MESSAGES" / "messages.po"
LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z_]+")
SNAKE = re.compile(r"(?<![\w/.:@-])[a-z]+(?:_[a-z0-9]+)+(?![\w/.@-])")
# Columns whose values are codes of a vocabulary: the seeded values count as codes, never as data.
CODE_COLUMNS = {(Call, "state"), (Call, "outcome"), (Call, "missed_reason"), (Call, "hangup_side"),
                (Call, "closed_by"), (Call, "recording_state"), (Call, "attribution_kind"),
                (Manager, "device_state")}
PAGE_BUDGET = 400  # a crawl that finds more pages than this is following a loop


def catalog():
    with CATALOG.open("rb") as handle:
        return read_po(handle, locale="ru")


def core_codes(db) -> set[str]:
    """Every code the core's vocabularies can produce, plus the seeded values of code columns."""
    codes = {*outcomes.Outcome, *outcomes.MissedReason, *outcomes.HangupSide, *rules.STRATEGIES,
             *sources.SOURCE_KINDS, *attribution.ATTRIBUTION_MODELS, *allocation.OVERFLOW_POLICIES,
             *security.ROLES, *_EXTENSION_STATES.values(), *rules.FREE_STATES,
             Manager.__table__.c.device_state.default.arg, attribution.UNKNOWN.kind}
    for model, column in CODE_COLUMNS:
        codes |= {v for v in db.scalars(select(getattr(model, column)).distinct()) if v}
    # routed_by holds a rule's name or one of the router's own words (sticky, fallback, after_hours)
    codes |= set(db.scalars(select(Call.routed_by).distinct()).all()) - set(db.scalars(select(RoutingRule.name)).all())
    codes.discard(None)
    return {str(code) for code in codes}


def data_words(db) -> set[str]:
    """Latin words of the seeded data (names, campaigns, URLs...), except the code columns'."""
    words: set[str] = set()
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.c if isinstance(c.type, (String, Text))
                   and not any(m.__table__ is table and c.name == name for m, name in CODE_COLUMNS)]
        if not columns:
            continue
        for row in db.execute(select(*columns)):
            for value in row:
                words |= set(LATIN_WORD.findall(value or ""))
        for column in (c for c in table.c if isinstance(c.type, JSON)):  # tags, match rules, schedules
            for (value,) in db.execute(select(column)):
                words |= set(LATIN_WORD.findall(json.dumps(value, ensure_ascii=False)))
    # the time-zone picker lists the tz database's names (and UTC offsets)
    words |= {w for zone in zoneinfo.available_timezones() for w in LATIN_WORD.findall(zone.replace("_", " "))}
    return words | {"UTC"}


def ru_plural(n: int) -> int:
    if n % 10 == 1 and n % 100 != 11:
        return 0
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return 1
    return 2


def wrong_plurals(cat) -> dict[str, list[str]]:
    """Per language, texts a page must never show: each plural entry rendered with a form that
    does not belong to the number (1 and 21 and 2 and 5 and 11)."""
    wrong: dict[str, list[str]] = {"en": [], "ru": []}
    for message in cat:
        if not message.pluralizable or not message.id[0]:
            continue
        english, russian = message.id, message.string
        for n in (1, 2, 5, 11, 21):
            right_en = 0 if n == 1 else 1
            wrong["en"] += [form % {"num": n} for i, form in enumerate(english) if i != right_en]
            if all(russian):
                wrong["ru"] += [form % {"num": n} for i, form in enumerate(russian) if i != ru_plural(n)
                                and form % {"num": n} != russian[ru_plural(n)] % {"num": n}]
    return wrong


@pytest.fixture
def every_outcome(db, data):
    """Calls of every outcome, missed reason, hang-up side, closing path and attribution kind;
    managers in every device state; a caller profile; a routing rule with a group."""
    now = utcnow()
    managers = add_managers(db, [str(200 + i) for i in range(len(set(_EXTENSION_STATES.values())) + 2)],
                            names=[f"Agent {chr(65 + i)}" for i in range(len(set(_EXTENSION_STATES.values())) + 2)],
                            extension=None)
    for manager, state in zip(managers, [*sorted(set(_EXTENSION_STATES.values())), "UNKNOWN", "INVALID"],
                              strict=True):
        manager.device_state = state
    managers[0].paused = True
    group = add_group(db, "Sales", managers[:2])
    add_rule(db, "Sales rule", group, strategy="ring_all")
    kinds = ["static", "dynamic", "grace", "repeat", "default", "unknown"]
    causes = [(16, "Normal Clearing"), (17, "User busy"), (19, None), (21, "Call Rejected"), (1, None),
              (34, None), (127, "Interworking, unspecified"), (99, None), (None, "Normal Clearing")]
    sides = list(outcomes.HangupSide)
    closers = ["events", "cdr", "sweeper", "merged"]
    routed = ["after_hours", "fallback", "sticky", "default", "Sales rule"]
    calls = []
    for i, reason in enumerate([None, *outcomes.MissedReason]):
        started = now - dt.timedelta(minutes=50 - i)
        outcome = "answered" if reason is None else "busy" if reason == "all_busy" else "missed"
        cause, cause_text = causes[i % len(causes)]
        calls.append(Call(site_id=data.site, did="+74951000001", caller_number=f"+7916555000{i}", started_at=started,
                          answered_at=started + dt.timedelta(seconds=5) if outcome == "answered" else None,
                          ended_at=started + dt.timedelta(seconds=3725), state="finished", outcome=outcome,
                          missed_reason=reason, wait_seconds=5, talk_seconds=3720 if outcome == "answered" else None,
                          manager_id=data.anna if outcome == "answered" else None, routed_manager_id=data.anna,
                          routed_by=routed[i % len(routed)], hangup_side=sides[i % len(sides)], hangup_cause=cause,
                          hangup_cause_text=cause_text, closed_by=closers[i % len(closers)],
                          recording_state=["kept", "empty", "missing", "deleted"][i % 4],
                          attribution_kind=kinds[i % len(kinds)], attribution_confidence=0.5,
                          source_id=data.yandex, is_first_call=i % 2 == 0))
    for state in ("ringing", "up"):
        calls.append(Call(site_id=data.site, did="+74951000002", caller_number="+79165550100", state=state,
                          started_at=now - dt.timedelta(seconds=30), routed_manager_id=data.anna,
                          attribution_kind="static", source_id=data.organic))
    db.add_all(calls)
    db.add(CallerProfile(site_id=data.site, number="+79160000001", name="Olga", calls_count=1, is_vip=True,
                         tags=["wholesale"], last_call_at=now))
    db.add(CallerProfile(site_id=data.site, number="+79161234567", calls_count=2, last_call_at=now))
    db.commit()
    return calls


@pytest.fixture
def server(app, data, every_outcome):
    app.config["SSE_MAX_SECONDS"] = 2
    with ServerThread(app) as running:
        yield f"http://127.0.0.1:{running.port}"


# Visible text of the page: text nodes outside script/style/template/[translate=no] that are
# rendered, the options of selects, and title/placeholder/aria-label attributes.
VISIBLE_TEXT = """() => {
  const skip = 'script,style,template,noscript,textarea,[translate="no"],[hidden]';
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.nodeValue.replace(/\\s+/g, ' ').trim();
    const parent = node.parentElement;
    if (!text || !parent || parent.closest(skip)) continue;
    if (parent.closest('option') || parent.checkVisibility()) out.push(text);
  }
  for (const el of document.querySelectorAll('[title],[placeholder],[aria-label]')) {
    if (el.closest(skip)) continue;
    for (const a of ['title', 'placeholder', 'aria-label']) {
      const v = (el.getAttribute(a) || '').trim();
      if (v) out.push(v);
    }
  }
  out.push(document.title);
  return out;
}"""


def page_key(url: str) -> str:
    """The path and the *names* of its query arguments: a report is crawled once whatever its dates."""
    parts = urlsplit(url)
    return parts.path + "?" + "&".join(sorted({name for name, _ in parse_qsl(parts.query)}))


def crawl(page, base: str) -> dict[str, list[str]]:
    """Every page linked from the start page (same origin, GET, not a download), with its text."""
    seen: dict[str, str] = {}
    texts: dict[str, list[str]] = {}
    queue = [f"{base}/"]
    while queue:
        url = queue.pop(0)
        key = page_key(url)
        if key in seen:
            continue
        seen[key] = url
        assert len(seen) < PAGE_BUDGET, "the crawl does not end: links keep making new pages"
        response = page.goto(url)
        assert response is not None and response.status < 400, f"{url}: {response and response.status}"
        if page.locator("#live-managers").count():  # the board redraws itself from its stream: check that too
            try:
                page.wait_for_function("() => document.getElementById('live-status').textContent === '●'",
                                       timeout=3000)
            except PlaywrightTimeout:
                pass  # a stream served elsewhere (or not at all): the server-rendered board is checked
        texts[page_key(page.url)] = page.evaluate(VISIBLE_TEXT)
        for href in page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))"):
            target = urljoin(page.url, href).split("#")[0]
            parts = urlsplit(target)
            if (target.startswith(base) and "format=csv" not in parts.query and "format=json" not in parts.query
                    and "download" not in parts.query
                    and not parts.path.endswith(("/recording", ".csv", ".json"))
                    and not parts.path.startswith(("/static/", "/api/v1/"))  # files and the API: not pages
                    and "/auth/logout" not in parts.path and page_key(target) not in seen):
                queue.append(target)
    return texts


def switch_language(page, base: str, locale: str) -> None:
    page.goto(f"{base}/")
    button = page.locator(f'form[action$="/auth/locale"] button[value="{locale}"]')
    if button.count():
        button.click()
        page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == locale


def login(page, base: str, user: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/auth/login")
    page.fill("#login", user)
    page.fill("#password", PASSWORD)
    page.click("#login-button")
    page.wait_for_load_state()
    assert "/auth/login" not in page.url


def problems(texts: dict[str, list[str]], *, codes: set[str], snake_allowed: set[str],
             plurals: list[str], english: dict[str, list[str]] | None, allowed_words: set[str]) -> list[str]:
    found = []
    code_patterns = [(code, re.compile(rf"(?<![\w-]){re.escape(code)}(?![\w-])")) for code in sorted(codes)]
    for key, lines in texts.items():
        english_lines = set((english or {}).get(key, ()))
        for text in lines:
            for code, pattern in code_patterns:
                if pattern.search(text):
                    found.append(f"{key}: raw code {code!r} in {text!r}")
            for name in SNAKE.findall(text):
                if name not in snake_allowed and name not in codes:
                    found.append(f"{key}: column-like name {name!r} in {text!r}")
            for wrong in plurals:
                if re.search(rf"(?<![\d.,]){re.escape(wrong)}(?!\w)", text):
                    found.append(f"{key}: wrong plural {wrong!r} in {text!r}")
            if english is not None and text in english_lines:
                foreign = [w for w in LATIN_WORD.findall(text) if w not in allowed_words]
                if foreign:
                    found.append(f"{key}: untranslated {text!r} (words {foreign})")
    return sorted(set(found))


def test_every_page_in_both_languages_has_no_raw_code_or_untranslated_text(browser, server, db, data):
    cat = catalog()
    codes = core_codes(db)
    data_latin = data_words(db)
    russian_latin = {w for m in cat if m.id for s in ([m.string] if isinstance(m.string, str) else m.string)
                     for w in LATIN_WORD.findall(s or "")}
    english_words = {w for m in cat if m.id for s in ([m.id] if isinstance(m.id, str) else m.id)
                     for w in LATIN_WORD.findall(s)}
    # On English pages a code that is also an English word of the interface ("answered") is fine;
    # on Russian pages every code is foreign unless the Russian catalog itself keeps it.
    codes_en = {c for c in codes if c not in english_words} - data_latin
    # destination kinds are a syntax the admin types ("queue:sales"): help texts show them as they are
    codes_ru = codes - russian_latin - data_latin - set(rules.DESTINATION_KINDS)
    snake_allowed = {w for w in russian_latin | data_latin if "_" in w}
    plurals = wrong_plurals(cat)
    context = browser.new_context(viewport={"width": 1360, "height": 900}, locale="en-US")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    report = []
    pages_seen = {}
    try:
        for user in ("admin", "super", "anna"):
            login(page, server, user)
            switch_language(page, server, "en")
            english = crawl(page, server)
            switch_language(page, server, "ru")
            russian = crawl(page, server)
            switch_language(page, server, "en")  # the seeded user's language, as it was
            pages_seen[user] = (len(english), len(russian))
            assert set(russian) == set(english), f"{user}: the two languages link different pages"
            report += problems(english, codes=codes_en, snake_allowed=snake_allowed, plurals=plurals["en"],
                               english=None, allowed_words=set())
            report += problems(russian, codes=codes_ru, snake_allowed=snake_allowed, plurals=plurals["ru"],
                               english=english, allowed_words=data_latin | russian_latin)
            if user == "admin":
                # the crawl reached what it must: settings listings and forms, call cards, reports, users
                for must in ("/settings/sources/?", "/settings/managers/?", "/users/?", "/live/?",
                             f"/calls/{data.missed}?", "/reports/missed?", "/reports/pools?"):
                    assert must in english, f"the crawl never reached {must}"
                missing = [i for i in db.scalars(select(Call.id)) if f"/calls/{i}?" not in english]
                assert missing == [], f"call cards the crawl never reached: {missing}"
    finally:
        context.close()
    print("pages crawled (en, ru):", pages_seen)
    assert errors == []
    assert report == [], "\n".join(report)

