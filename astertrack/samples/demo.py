"""A realistic sample data set so a newcomer sees full reports at once (``astertrack demo``).

Deterministic (seeded), 30 days back from now: one site with static and dynamic sources, a
number pool, managers in two groups, routing rules, a few thousand visits and calls with
plausible answer rates, repeat callers, leads, deals and ad costs.
"""

from __future__ import annotations

import copy
import datetime as dt
import random
from collections.abc import Callable
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from astertrack.db.models import (
    AdCost,
    Call,
    CallerProfile,
    Deal,
    Lead,
    NumberAssignment,
    Site,
    Source,
    User,
    VisitorSession,
    new_uid,
)
from astertrack.db.types import utcnow
from astertrack.passwords import hash_password
from astertrack.routing.recording import recording_name
from astertrack.routing.schedule import DAYS
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


def demo_loaded(session: Session) -> bool:
    return session.scalar(select(func.count(Site.id))) > 0


def load_demo(session: Session, days: int = 30, calls_per_day: int = 110, seed: int = 20261123,
              progress: Callable[[str], None] | None = None) -> dict:
    """Fill an empty database; returns counts and the demo logins created.

    Refuses to run on a database that already has sites.  Demo passwords are
    ``<login>-demo-password``; an existing user (e.g. the admin from ``init``) is left alone.
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
    sales = add_group(session, "Sales", managers[:4])
    vip = add_group(session, "Key accounts", managers[3:])
    add_rule(session, "VIP callers", vip, site=site, priority=10, match={"caller_tags": ["vip"]},
             strategy="least_recent")
    add_rule(session, "Balcony campaign", vip, site=site, priority=20, match={"utm_campaign": ["balkony_search"]},
             strategy="round_robin")
    add_rule(session, "Everyone else", sales, site=site, priority=100, match={}, strategy="round_robin",
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

    weights = [w for _, w, _ in sources]
    callers = [f"+79{rng.randint(10, 99)}{rng.randint(1000000, 9999999)}" for _ in range(int(days * calls_per_day * 0.7))]
    profiles: dict[str, CallerProfile] = {}
    counts = {"sessions": 0, "calls": 0, "leads": 0, "deals": 0}
    zone = ZoneInfo(site.timezone)
    today = now.astimezone(zone).date()
    for day in range(days):
        date = today - dt.timedelta(days=days - day)  # the last `days` whole days, site time
        midnight = dt.datetime.combine(date, dt.time(), zone)
        day_start = midnight.astimezone(dt.UTC)
        opens, closes = _working_seconds(date)
        for source, _, cost in sources:
            if cost:
                session.add(AdCost(source_id=source.id, day=date,
                                   amount=Decimal(cost) * Decimal(rng.uniform(0.7, 1.3)).quantize(Decimal("0.01"))))
        day_calls = int(calls_per_day * rng.uniform(0.6, 1.2) * (0.5 if date.weekday() == 6 else 1))
        for _ in range(day_calls):
            source, _, _ = rng.choices(sources, weights)[0]
            at = (midnight + dt.timedelta(seconds=rng.randint(opens, closes - 1))).astimezone(dt.UTC)  # wall time
            visit = None
            campaign = keyword = None
            if source.kind == "dynamic":
                visit, campaign, keyword = _visit(rng, site, source, at)
                session.add(visit)
                counts["sessions"] += 1
            caller = rng.choice(callers)
            profile = profiles.get(caller)
            first = profile is None
            session.flush()
            call = _call(rng, site, source, visit, caller, at, managers, campaign, keyword,
                         static_numbers.get(source.id) or rng.choice(pool_numbers).number, first)
            if visit is not None:
                session.add(NumberAssignment(number_id=rng.choice(pool_numbers).id, session_id=visit.id,
                                             assigned_at=visit.first_seen, last_heartbeat_at=at,
                                             expires_at=at + dt.timedelta(minutes=10),
                                             hard_expires_at=visit.first_seen + dt.timedelta(hours=1),
                                             released_at=at + dt.timedelta(minutes=10), release_reason="expired"))
            if not first:
                # Repeat callers keep their first source under the default first-touch model.
                call.source_id = profile.first_source_id
                call.attribution_kind = "repeat"
            session.add(call)
            session.flush()
            if first:
                profile = CallerProfile(site_id=site.id, number=caller, first_call_at=at, first_source_id=source.id,
                                        first_session_id=visit.id if visit else None, last_call_at=at, calls_count=0)
                session.add(profile)
                profiles[caller] = profile
            profile.calls_count += 1
            profile.last_call_at = at
            profile.last_source_id = source.id
            if call.manager_id:
                profile.personal_manager_id = call.manager_id
                profile.personal_manager_at = at
            counts["calls"] += 1
            if call.outcome == "answered" and (call.talk_seconds or 0) >= 30 and rng.random() < 0.45:
                lead = Lead(site_id=site.id, call_id=call.id, session_id=call.session_id, source_id=call.source_id,
                            manager_id=call.manager_id, phone=caller, status="qualified", created_at=at)
                session.add(lead)
                session.flush()
                counts["leads"] += 1
                if rng.random() < 0.35:
                    won = rng.random() < 0.7
                    session.add(Deal(lead_id=lead.id, status="won" if won else "lost",
                                     revenue=Decimal(rng.randrange(15000, 60000, 500)) if won else Decimal(0),
                                     created_at=at, closed_at=at + dt.timedelta(days=rng.randint(1, 6))))
                    counts["deals"] += 1
        # Visits that did not call still count in the funnel.
        for _ in range(day_calls * 9):
            source, _, _ = rng.choices(sources, weights)[0]
            if source.kind != "dynamic":
                continue
            at = day_start + dt.timedelta(seconds=rng.randint(0, 86399))
            session.add(_visit(rng, site, source, at)[0])
            counts["sessions"] += 1
        session.flush()
        say(f"day {day + 1}/{days}: {counts['calls']} calls, {counts['sessions']} sessions")
    session.commit()
    counts["created_logins"] = created_logins
    return counts


def _working_seconds(date: dt.date) -> tuple[int, int]:
    """Seconds after local midnight when the demo's working hours open and close that day."""
    opens, closes = WORKING_HOURS[DAYS[date.weekday()]][0]

    def seconds(text: str) -> int:
        hours, minutes = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60

    return seconds(opens), seconds(closes)


def _visit(rng: random.Random, site: Site, source: Source, at: dt.datetime):
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
    visit = VisitorSession(
        site_id=site.id, source_id=source.id, visitor_id=f"v{rng.getrandbits(48):012x}",
        ga_client_id=f"{rng.randint(10 ** 8, 10 ** 9)}.{int(at.timestamp())}",
        ym_client_id=str(rng.getrandbits(60)), utm_campaign=campaign, utm_term=keyword, keyword=keyword,
        referrer=referrer, landing_page=f"https://okna-pro.example{rng.choice(LANDINGS)}",
        current_page=f"https://okna-pro.example{rng.choice(LANDINGS)}",
        yclid=str(rng.getrandbits(50)) if utm["utm_source"] == "yandex" else None,
        gclid=f"Cj0K{rng.getrandbits(64):x}" if utm["utm_source"] == "google" else None,
        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/130.0", ip=f"95.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        page_views=rng.randint(1, 9), interacted=True, first_seen=at - dt.timedelta(minutes=rng.randint(1, 25)),
        last_seen=at, **utm)
    return visit, campaign, keyword


def _call(rng, site, source, visit, caller, at, managers, campaign, keyword, did, first) -> Call:
    manager = rng.choice(managers)
    roll = rng.random()
    call = Call(call_uid=new_uid(), site_id=site.id, did=did, caller_number=caller, caller_name=None, started_at=at, state="finished",
                source_id=source.id, session_id=visit.id if visit else None,
                attribution_kind="dynamic" if visit else "static",
                attribution_confidence=round(rng.uniform(0.8, 1.0), 2) if visit else 1.0,
                utm_source=visit.utm_source if visit else None, utm_medium=visit.utm_medium if visit else None,
                utm_campaign=campaign, keyword=keyword, is_first_call=first, routed_manager_id=manager.id,
                routed_by="Everyone else", routing_attempts=1, closed_by="events", node="pbx1")
    if roll < 0.78:
        wait = rng.uniform(2, 25)
        talk = rng.expovariate(1 / 150) + 5
        call.outcome, call.manager_id, call.answered_by = "answered", manager.id, manager.endpoint
        call.answered_at = at + dt.timedelta(seconds=wait)
        call.ended_at = call.answered_at + dt.timedelta(seconds=talk)
        call.wait_seconds, call.talk_seconds = round(wait, 1), round(talk, 1)
        call.hangup_side = rng.choice(["caller", "manager"])
        call.hangup_cause, call.hangup_cause_text = 16, "Normal Clearing"
        call.recording_path = recording_name(call.call_uid, at) + ".wav"
        call.recording_state = "kept"
    else:
        wait = rng.uniform(3, 40)
        reason = rng.choices(["no_answer", "caller_hangup", "all_busy", "queue_abandon"], [4, 4, 1, 1])[0]
        call.outcome = "busy" if reason == "all_busy" else "missed"
        call.missed_reason = reason
        call.ended_at = at + dt.timedelta(seconds=wait)
        call.wait_seconds, call.talk_seconds = round(wait, 1), 0.0
        call.hangup_side = "caller" if reason in ("caller_hangup", "queue_abandon") else "pbx"
        call.recording_state = "empty"
    call.total_seconds = round((call.ended_at - at).total_seconds(), 1)
    return call
