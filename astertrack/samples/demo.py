"""A realistic sample data set so a newcomer sees full reports at once (``astertrack demo``).

Deterministic (seeded), the last 30 whole days: one site with static and dynamic sources, a
number pool, managers in two groups, routing rules, a few thousand visits and calls with
plausible answer rates, repeat callers, leads, deals and ad costs.

It holds together as the live system's data would: calls ring only while the rule and a
manager are open (``routing.schedule``), busiest late morning and mid-afternoon; every visit
of a pool source holds a pool number (or overflows) and a call comes in on the number its
visit held, so pool health counts the visits the reports count; a repeat caller keeps the
first touch's source and visit, as ``routing.attribution`` does; answered calls have a short
generated recording in the recordings directory, or none at all when there is no directory.
"""

from __future__ import annotations

import copy
import datetime as dt
import heapq
import io
import math
import os
import random
import sys
import wave
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from astertrack.db.models import (
    AdCost,
    Call,
    CallerProfile,
    Lead,
    NumberAssignment,
    OverflowEvent,
    Site,
    Source,
    User,
    VisitorSession,
    new_uid,
)
from astertrack.db.types import utcnow
from astertrack.leads.deals import set_state
from astertrack.leads.enquiries import record_enquiry
from astertrack.passwords import hash_password
from astertrack.review import actions as review
from astertrack.routing.attribution import REPEAT_CONFIDENCE
from astertrack.routing.recording import recording_name
from astertrack.routing.schedule import is_open, zone
from astertrack.samples.factories import (
    add_dynamic_source,
    add_group,
    add_managers,
    add_numbers,
    add_pool,
    add_rule,
    add_site,
    add_static_source,
    number_range,
)

DEMO_ADMIN = ("admin", "admin-demo-password")
DEMO_SUPERVISOR = ("supervisor", "supervisor-demo-password")

# name, kind, channel, rules, weight of traffic, daily cost (RUB)
SOURCES = [
    ("Yandex Direct", "dynamic", "cpc", [{"field": "utm_source", "op": "equals", "value": "yandex"},
                                         {"field": "utm_medium", "op": "equals", "value": "cpc"}], 34, 21000),
    ("Google Ads", "dynamic", "cpc", [{"field": "utm_source", "op": "equals", "value": "google"},
                                      {"field": "utm_medium", "op": "equals", "value": "cpc"}], 22, 15500),
    ("VK Ads", "dynamic", "social", [{"field": "utm_source", "op": "equals", "value": "vk"}], 10, 7500),
    ("Organic search", "dynamic", "organic", [{"field": "referrer", "op": "contains", "value": "yandex.ru"}], 18, 0),
    ("Billboard Tverskaya", "static", "offline", [], 6, 6000),
    ("Radio Energy", "static", "offline", [], 4, 9000),
    ("Direct / other", "dynamic", "direct", [], 6, 0),
]
CAMPAIGNS = {
    "Yandex Direct": [("okna_moskva", ["пластиковые окна", "окна цена", "окна под ключ"]),
                      ("balkony_search", ["остекление балкона", "балкон под ключ"])],
    "Google Ads": [("windows_brand", ["okna pro", "окна про отзывы"]), ("windows_generic", ["купить окна"])],
    "VK Ads": [("vk_retarget", [""]), ("vk_lookalike", [""])],
}
MANAGERS = [("Анна Смирнова", "PJSIP/101"), ("Иван Петров", "PJSIP/102"), ("Ольга Кузнецова", "PJSIP/103"),
            ("Дмитрий Орлов", "PJSIP/104"), ("Мария Волкова", "PJSIP/105")]
LANDINGS = ["/", "/okna", "/balkony", "/price", "/contacts", "/akciya"]
MAIN_NUMBER = "+74951230000"  # the number printed on the site; the pool's fallback
# Every day of the week, Sunday shorter: demo calls are placed inside these hours (site time), so
# none of them would have gone after-hours on the demo's own rules and managers.
WORKING_HOURS = {**{day: [["09:00", "21:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat")},
                 "sun": [["10:00", "18:00"]]}
# How calls and visits spread over the day (site time, weight per hour): calls climb to a late-
# morning peak, dip at lunch, peak again mid-afternoon and tail off in the evening; the site is
# visited around the clock, least at night.
CALL_CURVE = (0, 0, 0, 0, 0, 0, 0.2, 0.4, 0.7, 0.9, 1.3, 1.5, 1.3, 1.0, 1.2, 1.4, 1.3, 1.1, 0.8, 0.6, 0.45, 0.3, 0.2, 0.1)
VISIT_CURVE = (0.25, 0.15, 0.1, 0.08, 0.08, 0.1, 0.25, 0.5, 0.8, 1.0, 1.2, 1.3, 1.25, 1.15, 1.2, 1.25, 1.2, 1.1,
               1.0, 1.05, 1.1, 1.0, 0.75, 0.45)
WEEKDAY_FACTOR = (1.0, 1.05, 1.0, 1.0, 0.95, 0.65, 0.5)  # Monday .. Sunday
RECORDING_CLIPS = 6  # distinct generated recordings; the calls share them through hard links
RECORDING_RATE = 8000  # what MixMonitor writes for a phone call: 8 kHz, 16-bit, mono


@dataclass
class _PlannedCall:
    """A call placed in time before the rows exist: its source and, for a pool source, its visit."""

    at: dt.datetime
    source: Source
    visit: VisitorSession | None


def demo_loaded(session: Session) -> bool:
    return session.scalar(select(func.count(Site.id))) > 0


def load_demo(session: Session, days: int = 30, calls_per_day: int = 110, seed: int = 20261123,
              progress: Callable[[str], None] | None = None, recordings_dir: str | Path | None = None) -> dict:
    """Fill an empty database; returns counts and the demo logins created.

    Refuses to run on a database that already has sites.  Demo passwords are
    ``<login>-demo-password``; an existing user (e.g. the admin from ``init``) is left alone.
    ``recordings_dir`` (the ``[recordings] dir`` the admin's player reads) gets a short generated
    recording per answered call; without it the calls say they were not recorded.
    """
    if demo_loaded(session):
        raise RuntimeError("the database already has sites; demo data goes only into an empty database")
    say = progress or (lambda _msg: None)
    rng = random.Random(seed)
    now = utcnow().replace(microsecond=0)

    site = add_site(session, "Окна Про (demo)", domains=["okna-pro.example", "www.okna-pro.example", "localhost"],
                    default_number=MAIN_NUMBER, display_format="8 (XXX) XXX-XX-XX", replace_numbers=[MAIN_NUMBER],
                    replace_selectors=[".phone", "a[href^='tel:']"],
                    crm_url_template="https://crm.example/contacts?phone={phone}")
    pool = add_pool(session, site, "Main pool", fallback_number=MAIN_NUMBER, default=True)
    pool_numbers = add_numbers(session, site, number_range("+74951231000", 12), pool=pool,
                               labels=[f"pool #{i + 1}" for i in range(12)])

    sources: list[tuple[Source, int, int]] = []
    static_numbers: dict[int, str] = {}  # source id -> its number
    free_static_numbers = iter(number_range("+74951239000", len(SOURCES)))
    for priority, (name, kind, channel, rules, weight, cost) in enumerate(SOURCES):
        fields = dict(channel=channel, match_rules=rules, priority=(priority + 1) * 10, fallback_number=MAIN_NUMBER)
        if kind == "dynamic":
            source = add_dynamic_source(session, site, name, pool, **fields)
        else:
            number = next(free_static_numbers)
            source = add_static_source(session, site, name, [number], label=name, **fields)
            static_numbers[source.id] = number
        sources.append((source, weight, cost))

    managers = add_managers(session, [endpoint.split("/")[-1] for _, endpoint in MANAGERS],
                            names=[name for name, _ in MANAGERS], device_state="NOT_INUSE", schedule=WORKING_HOURS)
    sales_managers, vip_managers = managers[:4], managers[3:]
    sales = add_group(session, "Sales", sales_managers)
    vip = add_group(session, "Key accounts", vip_managers)
    add_rule(session, "VIP callers", vip, site=site, priority=10, match={"caller_tags": ["vip"]},
             strategy="least_recent")
    balcony_rule = add_rule(session, "Balcony campaign", vip, site=site, priority=20,
                            match={"utm_campaign": ["balkony_search"]}, strategy="round_robin")
    main_rule = add_rule(session, "Everyone else", sales, site=site, priority=100, match={}, strategy="round_robin",
                         schedule=copy.deepcopy(WORKING_HOURS), after_hours_destination="voicemail:100@default")
    existing = set(session.scalars(select(User.login)))
    demo_users = [(DEMO_ADMIN[0], DEMO_ADMIN[1], "admin", None),
                  (DEMO_SUPERVISOR[0], DEMO_SUPERVISOR[1], "supervisor", None)]
    demo_users += [(f"m{m.extension}", f"m{m.extension}-demo-password", "manager", m.id) for m in managers]
    created_logins = []
    for login, password, role, manager_id in demo_users:
        if login not in existing:
            created_logins.append(login)  # an admin made by `astertrack init` keeps its own password
            session.add(User(login=login, password_hash=hash_password(password), role=role, manager_id=manager_id))
    session.flush()
    say("sites, sources, numbers, managers and users created")

    def open_route(rule, group: list, at: dt.datetime) -> list:
        """The group's managers a call at ``at`` could ring: the rule and the manager both open."""
        if not is_open(rule.schedule, at, site.timezone):
            return []
        return [m for m in group if is_open(m.schedule, at, site.timezone)]

    def can_ring(at: dt.datetime) -> bool:
        """A call at ``at`` would not go after-hours: the catch-all rule and one of its managers are open."""
        return is_open(main_rule.schedule, at, site.timezone) and any(
            is_open(m.schedule, at, site.timezone) for m in sales_managers)

    # 1. Place calls and visits in time, day by day (site time).
    weights = [w for _, w, _ in sources]
    planned: list[_PlannedCall] = []
    visits: list[VisitorSession] = []
    today = now.astimezone(zone(site.timezone)).date()
    for day in range(days):
        date = today - dt.timedelta(days=days - day)  # the last `days` whole days, site time
        for source, _, cost in sources:
            if cost:
                session.add(AdCost(source_id=source.id, day=date,
                                   amount=Decimal(cost) * Decimal(rng.uniform(0.7, 1.3)).quantize(Decimal("0.01"))))
        day_calls = round(calls_per_day * WEEKDAY_FACTOR[date.weekday()] * rng.uniform(0.85, 1.15))
        call_times = _moments(rng, date, site.timezone, day_calls, CALL_CURVE,
                              can_ring)
        for at in call_times:
            source, _, _ = rng.choices(sources, weights)[0]
            visit = None
            if source.kind == "dynamic":  # on the site a few minutes before dialling the number it showed
                visit = _visit(rng, site, source, at - dt.timedelta(seconds=rng.randint(45, 600)),
                               at + dt.timedelta(seconds=rng.randint(20, 120)))
                visits.append(visit)
            planned.append(_PlannedCall(at, source, visit))
        # Visits that did not call still count in the funnel (and hold pool numbers).
        for at in _moments(rng, date, site.timezone, len(call_times) * 9, VISIT_CURVE):
            source, _, _ = rng.choices(sources, weights)[0]
            if source.kind == "dynamic":
                visits.append(_visit(rng, site, source, at))
        say(f"day {day + 1}/{days}: {len(planned)} calls, {len(visits)} sessions placed")

    # 2. The visits, each holding a pool number from its first page to a short grace after it left.
    visits.sort(key=lambda v: v.first_seen)
    session.add_all(visits)
    session.flush()
    held = _hold_pool_numbers(session, site, pool, pool_numbers, visits)
    say(f"{len(visits)} sessions written, {len(visits) - len(held)} of them found the pool full")

    # 3. The calls, in time order so first and repeat calls follow each other as they happened.
    recordings = _Recordings(Path(recordings_dir), seed) if recordings_dir is not None else None
    callers = [f"+79{rng.randint(10, 99)}{rng.randint(1000000, 9999999)}"
               for _ in range(int(days * calls_per_day * 0.7))]
    profiles: dict[str, CallerProfile] = {}
    visits_by_id = {visit.id: visit for visit in visits}
    window = dt.timedelta(days=site.attribution_window_days or 30)
    counts = {"sessions": len(visits), "calls": 0, "leads": 0, "deals": 0, "recordings": 0}
    planned.sort(key=lambda p: p.at)
    for plan in planned:
        at = plan.at
        caller = rng.choice(callers)
        profile = profiles.get(caller)
        repeat = profile is not None and at - profile.last_call_at <= window
        call = _call(rng, site, plan, caller, static_numbers, held, first=not repeat)
        if repeat and site.attribution_model == "first_touch" and profile.first_source_id is not None:
            # As routing.attribution does: the first touch's source and visit, not this call's.
            first_visit = visits_by_id.get(profile.first_session_id)
            call.attribution_kind, call.attribution_confidence = "repeat", REPEAT_CONFIDENCE
            call.source_id, call.session_id = profile.first_source_id, profile.first_session_id
            _take_visit_fields(call, first_visit)
        rule, group = ((balcony_rule, vip_managers) if call.utm_campaign == "balkony_search"
                       else (main_rule, sales_managers))
        candidates = open_route(rule, group, at)
        if not candidates:  # the campaign's group is closed: the catch-all rule takes it (open by construction)
            rule, candidates = main_rule, open_route(main_rule, sales_managers, at)
        _finish(rng, call, rule, rng.choice(candidates), recordings)
        counts["recordings"] += call.recording_path is not None
        session.add(call)
        session.flush()
        if profile is None:
            profile = CallerProfile(site_id=site.id, number=caller, first_call_at=at, first_source_id=call.source_id,
                                    first_session_id=call.session_id, last_call_at=at, calls_count=0)
            session.add(profile)
            profiles[caller] = profile
        profile.calls_count += 1
        profile.last_call_at = at
        profile.last_source_id, profile.last_session_id = call.source_id, call.session_id
        if call.manager_id:
            profile.personal_manager_id = call.manager_id
            profile.personal_manager_at = at
        counts["calls"] += 1
        # Leads as the product makes them: each call an enquiry; some visitors sent the site's form
        # first (a form lead the call then joins); deals through set_state, the one writer of Deal.
        if call.session_id is not None and rng.random() < 0.12:
            visit = visits_by_id.get(call.session_id)
            form_at = max(at - dt.timedelta(minutes=rng.randint(5, 90)), visit.first_seen) if visit else at
            record_enquiry(session, site, "form", at=form_at, phone=caller, name=rng.choice(FORM_NAMES),
                           message="Перезвоните, пожалуйста", visitor_session=visit,
                           page_url=visit.landing_page if visit else None)
        enquiry = record_enquiry(session, site, "call", at=at, call=call)
        lead = session.get(Lead, enquiry.lead_id)
        counts["leads"] += not enquiry.repeat
        if call.outcome == "answered" and (call.talk_seconds or 0) >= 30 and rng.random() < 0.45:
            if rng.random() < 0.35:
                won = rng.random() < 0.7
                set_state(session, lead, "won" if won else "lost",
                          amount=Decimal(rng.randrange(15000, 60000, 500)) if won else None, currency="RUB",
                          now=at + dt.timedelta(days=rng.randint(1, 6)))
                counts["deals"] += 1
            elif lead.status == "new":
                set_state(session, lead, "qualified", now=at)
        if counts["calls"] % 500 == 0:
            say(f"{counts['calls']}/{len(planned)} calls written")
    session.flush()
    counts["reviewed"] = _review(rng, session, site, now)
    say(f"{counts['reviewed']} calls reviewed by the supervisor")
    session.commit()
    counts["created_logins"] = created_logins
    return counts


# A supervisor's work on the demo: the site's checklist, some calls scored and tagged, missed
# calls older than the last day of calls called back and marked handled (the newest are still to
# do, whatever day of the week the demo is loaded on).
DEMO_CHECKLIST = (("Greeted the caller and said the company's name", 1), ("Asked what the caller needs", 2),
                  ("Named the price or the next step", 2), ("Agreed on a measurement visit", 3))
FORM_NAMES = ("Иван", "Мария", "Ольга", "Сергей", "Анна", "Дмитрий")
DEMO_TAGS = ("price question", "measurement booked", "complaint")


def _review(rng: random.Random, session: Session, site: Site, now: dt.datetime) -> int:
    supervisor = session.scalar(select(User).where(User.login == DEMO_SUPERVISOR[0]))
    items = [review.save_item(session, None, review.clean_item(text, points, site.id, position))
             for position, (text, points) in enumerate(DEMO_CHECKLIST)]
    session.flush()
    calls = session.scalars(select(Call).where(Call.site_id == site.id).order_by(Call.started_at)).all()
    last_day = (calls[-1].started_at if calls else now) - dt.timedelta(days=1)
    reviewed = 0
    for call in calls:
        if call.outcome == "answered" and rng.random() < 0.15:
            ticked = [item.id for item in items if rng.random() < 0.8]
            score = review.record_score(session, call, supervisor.id, ticked)
            score.at = call.started_at + dt.timedelta(hours=rng.uniform(1, 20))  # listened to later that day
            if rng.random() < 0.5:
                review.add_tag(session, call, rng.choice(DEMO_TAGS))
            reviewed += 1
        elif call.outcome in review.MISSED_OUTCOMES and call.started_at < last_day and rng.random() < 0.85:
            mark = review.mark_handled(session, call, supervisor.id)
            mark.handled_at = call.started_at + dt.timedelta(minutes=rng.uniform(5, 240))  # called back
            reviewed += 1
    return reviewed


def _moments(rng: random.Random, date: dt.date, tz: str, count: int, curve: tuple[float, ...],
             accepts: Callable[[dt.datetime], bool] | None = None) -> list[dt.datetime]:
    """``count`` moments (aware UTC, sorted) of one local day, spread over its minutes by the hourly
    ``curve`` and only on minutes ``accepts`` (working hours are whole minutes)."""
    midnight = dt.datetime.combine(date, dt.time(), zone(tz))
    minutes, weights = [], []
    for minute in range(24 * 60):
        weight = curve[minute // 60]
        at = (midnight + dt.timedelta(minutes=minute)).astimezone(dt.UTC)
        if weight and (accepts is None or accepts(at)):
            minutes.append(at)
            weights.append(weight)
    if not minutes or count <= 0:
        return []
    return sorted(at + dt.timedelta(seconds=rng.randint(0, 59)) for at in rng.choices(minutes, weights, k=count))


def _hold_pool_numbers(session: Session, site: Site, pool, numbers: list, visits: list[VisitorSession]) -> dict:
    """Give each visit (sorted by arrival) the pool number released longest ago, as the allocator
    does, held until a grace after the visitor left; a visitor who finds every number held gets
    the fallback (an overflow).  Returns {session id: number held}."""
    grace = dt.timedelta(seconds=site.unload_grace_seconds)
    free = [(dt.datetime.min.replace(tzinfo=dt.UTC), index, number) for index, number in enumerate(numbers)]
    held = {}
    for visit in visits:
        if free[0][0] > visit.first_seen:
            session.add(OverflowEvent(site_id=site.id, pool_id=pool.id, session_id=visit.id,
                                      occurred_at=visit.first_seen, policy="fallback", visitor={"ip": visit.ip}))
            continue
        _, index, number = heapq.heappop(free)
        released = visit.last_seen + grace
        heapq.heappush(free, (released, index, number))
        held[visit.id] = number
        session.add(NumberAssignment(number_id=number.id, session_id=visit.id, assigned_at=visit.first_seen,
                                     last_heartbeat_at=visit.last_seen,
                                     expires_at=visit.last_seen + dt.timedelta(seconds=site.hold_seconds),
                                     hard_expires_at=visit.first_seen + dt.timedelta(seconds=site.hold_cap_seconds),
                                     released_at=released, release_reason="unload"))
    session.flush()
    return held


def _visit(rng: random.Random, site: Site, source: Source, first_seen: dt.datetime,
           last_seen: dt.datetime | None = None) -> VisitorSession:
    campaign, keyword = None, None
    utm = {"utm_source": None, "utm_medium": None}
    rules = {r["field"]: r["value"] for r in source.match_rules}
    if "utm_source" in rules:
        utm = {"utm_source": rules["utm_source"], "utm_medium": rules.get("utm_medium", "cpc")}
        options = CAMPAIGNS.get(source.name)
        if options:
            campaign, keywords = rng.choice(options)
            keyword = rng.choice(keywords) or None
    referrer = "https://yandex.ru/search/?text=okna" if source.channel == "organic" else None
    if source.channel == "organic":
        keyword = "окна"
    page_views = min(1 + int(rng.expovariate(1 / 1.8)), 12)  # most visitors read a page or two
    if last_seen is None:
        last_seen = first_seen + dt.timedelta(seconds=page_views * rng.randint(10, 50))
    return VisitorSession(
        site_id=site.id, source_id=source.id, visitor_id=f"v{rng.getrandbits(48):012x}",
        ga_client_id=f"{rng.randint(10 ** 8, 10 ** 9)}.{int(first_seen.timestamp())}",
        ym_client_id=str(rng.getrandbits(60)), utm_campaign=campaign, utm_term=keyword, keyword=keyword,
        referrer=referrer, landing_page=f"https://okna-pro.example{rng.choice(LANDINGS)}",
        current_page=f"https://okna-pro.example{rng.choice(LANDINGS)}",
        yclid=str(rng.getrandbits(50)) if utm["utm_source"] == "yandex" else None,
        gclid=f"Cj0K{rng.getrandbits(64):x}" if utm["utm_source"] == "google" else None,
        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/130.0",
        ip=f"95.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        page_views=page_views, interacted=True, first_seen=first_seen, last_seen=last_seen, **utm)


def _take_visit_fields(call: Call, visit: VisitorSession | None) -> None:
    """The call's UTM fields are those of the visit it is attributed to (none without one)."""
    call.utm_source = visit.utm_source if visit else None
    call.utm_medium = visit.utm_medium if visit else None
    call.utm_campaign = visit.utm_campaign if visit else None
    call.keyword = visit.keyword if visit else None


def _call(rng: random.Random, site: Site, plan: _PlannedCall, caller: str, static_numbers: dict[int, str],
          held: dict, first: bool) -> Call:
    """The call as attribution sees it: a static number, the pool number its visit held, or, for a
    visitor the pool had no number for, the site's main number (nothing to attribute it to)."""
    call = Call(call_uid=new_uid(), site_id=site.id, caller_number=caller, caller_name=None, started_at=plan.at,
                state="finished", is_first_call=first, routing_attempts=1, closed_by="events", node="pbx1")
    number = held.get(plan.visit.id) if plan.visit is not None else None
    if plan.source.kind == "static":
        call.did, call.source_id = static_numbers[plan.source.id], plan.source.id
        call.attribution_kind, call.attribution_confidence = "static", 1.0
    elif number is not None:
        call.did, call.source_id, call.session_id = number.number, plan.source.id, plan.visit.id
        call.attribution_kind, call.attribution_confidence = "dynamic", 1.0
        _take_visit_fields(call, plan.visit)
    else:
        call.did, call.attribution_kind, call.attribution_confidence = MAIN_NUMBER, "default", 0.0
    return call


def _finish(rng: random.Random, call: Call, rule, manager, recordings: _Recordings | None) -> None:
    """Routing and outcome: rung to ``manager`` by ``rule``; answered about four times in five."""
    at = call.started_at
    call.routed_manager_id, call.routed_by = manager.id, rule.name
    if rng.random() < 0.78:
        wait = rng.uniform(2, 25)
        talk = rng.expovariate(1 / 150) + 5
        call.outcome, call.manager_id, call.answered_by = "answered", manager.id, manager.endpoint
        call.answered_at = at + dt.timedelta(seconds=wait)
        call.ended_at = call.answered_at + dt.timedelta(seconds=talk)
        call.wait_seconds, call.talk_seconds = round(wait, 1), round(talk, 1)
        call.hangup_side = rng.choice(["caller", "manager"])
        call.hangup_cause, call.hangup_cause_text = 16, "Normal Clearing"
        if recordings is not None:
            call.recording_path = recordings.write(call.call_uid, at, rng.randrange(RECORDING_CLIPS))
            call.recording_state = "kept"
    else:
        wait = rng.uniform(3, 40)
        reason = rng.choices(["no_answer", "caller_hangup", "all_busy", "queue_abandon"], [4, 4, 1, 1])[0]
        call.outcome = "busy" if reason == "all_busy" else "missed"
        call.missed_reason = reason
        call.ended_at = at + dt.timedelta(seconds=wait)
        call.wait_seconds, call.talk_seconds = round(wait, 1), 0.0
        call.hangup_side = "caller" if reason in ("caller_hangup", "queue_abandon") else "pbx"
    call.total_seconds = round((call.ended_at - at).total_seconds(), 1)


class _Recordings:
    """Short generated recordings of answered demo calls, at the names the dialplan would use.

    A handful of distinct clips; each further call gets a hard link to one already written (a copy
    where the file system has no links), so a month of demo calls costs well under a megabyte.
    """

    def __init__(self, directory: Path, seed: int):
        self.directory = directory
        self.seed = seed
        self.first_file: dict[int, Path] = {}

    def write(self, call_uid: str, started_at: dt.datetime, clip: int) -> str:
        name = recording_name(call_uid, started_at) + ".wav"
        target = self.directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        first = self.first_file.get(clip)
        if first is not None:
            try:
                os.link(first, target)
                return name
            except OSError:
                pass
        target.write_bytes(_conversation_clip(random.Random(self.seed + clip)))
        self.first_file.setdefault(clip, target)
        return name


def _conversation_clip(rng: random.Random) -> bytes:
    """A few seconds of WAV that sound like a phone call: two voices taking turns in syllables,
    with pauses and line hiss (8 kHz, 16-bit mono, as MixMonitor writes)."""
    rate = RECORDING_RATE
    total = int(rng.uniform(3.0, 6.0) * rate)
    voices = (rng.uniform(105, 135), rng.uniform(185, 235))  # two speakers' pitch, Hz
    speaker = rng.randrange(2)
    samples = array("h")
    while len(samples) < total:
        pitch, syllables, phase = voices[speaker], rng.uniform(3.5, 5.5), 0.0
        for n in range(int(rng.uniform(0.6, 1.6) * rate)):
            t = n / rate
            phase += 2 * math.pi * pitch * (1 + 0.08 * math.sin(2 * math.pi * 0.7 * t)) / rate
            envelope = math.sin(math.pi * syllables * t) ** 2
            voice = math.sin(phase) + 0.5 * math.sin(2 * phase) + 0.25 * math.sin(3 * phase)
            samples.append(int(7000 * envelope * voice + rng.gauss(0, 120)))
        samples.extend(int(rng.gauss(0, 120)) for _ in range(int(rng.uniform(0.15, 0.4) * rate)))
        speaker = 1 - speaker
    del samples[total:]
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()
