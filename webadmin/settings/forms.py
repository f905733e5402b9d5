"""The settings forms (WTForms via Flask-WTF).  Choices that name engine behaviour - routing
strategies, source kinds, destination kinds, source-rule ops, rule match keys - are computed
from the core's constants, so the admin offers exactly what the engine does; only their labels
live here (``test_forms_offer_every_engine_value`` fails when a value has none)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms import BooleanField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import StopValidation, ValidationError
from wtforms.widgets import TextArea

from astertrack.db.models import Manager, ManagerGroup, NumberPool, Site, Source, TrackingNumber
from astertrack.dni import allocation, sources
from astertrack.routing import attribution, rules
from webadmin.settings import validators as v
from webadmin.settings.builders import Builder, Conditions, Hours, Match, TimeZone

STRATEGY_LABELS = {
    "round_robin": _l("round robin"), "least_recent": _l("least recently called first"),
    "fewest_today": _l("fewest calls today first"), "ring_all": _l("ring all at once"),
    "queue": _l("Asterisk queue of the group"),
}
SOURCE_KIND_LABELS = {"static": _l("static number"), "dynamic": _l("dynamic pool")}
OVERFLOW_POLICY_LABELS = {"fallback": _l("show the fallback number"), "reuse_oldest": _l("reuse the oldest number")}
ATTRIBUTION_MODEL_LABELS = {"first_touch": _l("first touch"), "last_touch": _l("last touch"),
                            "last_non_direct": _l("last non-direct")}


def labelled(values: Iterable[str], labels: dict[str, Any]) -> list[SelectChoice]:
    """An option for each engine value; a value without a label shows as itself."""
    return [SelectChoice(value, labels.get(value, value)) for value in values]


# ------------------------------------------------------------------ validators and fields


class Required:
    """Something must be typed (whitespace is nothing); ``0`` is a value."""

    field_flags = {"required": True}

    def __call__(self, form, field) -> None:
        if not any(str(raw).strip() for raw in (field.raw_data or [])) and field.data in (None, "", []):
            field.errors[:] = []
            raise StopValidation(str(_l("Required.")))


class Between:
    def __init__(self, minimum: int | None = 0, maximum: int | None = None):
        self.minimum, self.maximum = minimum, maximum

    def __call__(self, form, field) -> None:
        if field.data is None:
            return
        if self.minimum is not None and field.data < self.minimum:
            raise ValidationError(str(_l("Must be at least %(n)s.", n=self.minimum)))
        if self.maximum is not None and field.data > self.maximum:
            raise ValidationError(str(_l("Must be at most %(n)s.", n=self.maximum)))


class Text(StringField):
    """A line of text; ``parse`` (a ``validators`` function) turns it into the stored value.
    Shown back as typed when the form has errors, else as ``show`` renders the stored value."""

    def __init__(self, label=None, validators=None, parse: Callable[[str], Any] | None = None, length: int = 200,
                 show: Callable[[Any], str] | None = None, parse_empty: bool = False, **kwargs):
        super().__init__(label, validators, **kwargs)
        self.parse, self.length, self.show, self.parse_empty = parse, length, show, parse_empty

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        raw = valuelist[0].strip()
        self.data = None
        if not raw and not self.parse_empty:
            return
        if self.parse is not None:
            self.data = self.parse(raw)  # ValueError -> this field's error
        elif len(raw) > self.length:
            raise ValueError(str(_l("At most %(n)s characters.", n=self.length)))
        else:
            self.data = raw

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        if self.show is not None:
            return self.show(self.data)
        return "" if self.data is None else str(self.data)


def _lines(value: Any) -> str:
    return "\n".join(value or [])


def ListArea(label, parse, **kwargs) -> Text:  # noqa: N802
    return Text(label, parse=parse, show=_lines, parse_empty=True, widget=TextArea(),
                render_kw={"rows": 4, "cols": 60}, **kwargs)


class WholeNumber(StringField):
    def __init__(self, label=None, validators=None, minimum: int | None = 0, maximum: int | None = None, **kwargs):
        kwargs.setdefault("render_kw", {"inputmode": "numeric"})
        super().__init__(label, [*(validators or []), Between(minimum, maximum)], **kwargs)

    def process_formdata(self, valuelist: list[str]) -> None:
        if not valuelist:
            return
        raw = valuelist[0].strip()
        self.data = None
        if raw:
            try:
                self.data = int(raw)
            except ValueError:
                raise ValueError(str(_l("Enter a whole number."))) from None

    def _value(self) -> str:
        if self.raw_data:
            return self.raw_data[0]
        return "" if self.data is None else str(self.data)


class _OneOf:
    """The choice error every select shows."""

    def pre_validate(self, form) -> None:
        allowed = {self.coerce(choice.value) for choice in (self.choices or [])}
        picked = self.data if isinstance(self.data, list) else [self.data]
        if any(item not in allowed for item in picked):
            raise ValidationError(str(_l("Choose one of the options.")))


class Choice(_OneOf, SelectField):
    pass


def _row_id(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if hasattr(value, "id"):
        return value.id
    return int(value) if str(value).isdigit() else -1


def _options(model: type, db: Session) -> list[SelectChoice]:
    column = model.name if hasattr(model, "name") else model.number
    live = [model.archived_at.is_(None)] if hasattr(model, "archived_at") else []  # archived rows leave pickers
    return [SelectChoice(row.id, row.label)
            for row in db.execute(select(model.id, column.label("label")).where(*live).order_by(column))]


class Row(_OneOf, SelectField):
    """A row of ``model`` by id; the options are read from the database (``load``)."""

    def __init__(self, label=None, validators=None, model: type | None = None, **kwargs):
        super().__init__(label, validators, coerce=_row_id, choices=[], **kwargs)
        self.model = model

    def load(self, db: Session) -> None:
        self.choices = ([] if self.flags.required else [SelectChoice("", "—")]) + _options(self.model, db)


class Rows(_OneOf, SelectMultipleField):
    """Several rows of ``model``; stored as the objects (a relationship)."""

    def __init__(self, label=None, validators=None, model: type | None = None, **kwargs):
        super().__init__(label, validators, coerce=_row_id, choices=[], render_kw={"size": 6}, **kwargs)
        self.model = model

    def process_data(self, value) -> None:
        self.data = [_row_id(item) for item in (value or [])]

    def load(self, db: Session) -> None:
        self.choices = _options(self.model, db)

    def rows(self, db: Session) -> list[Any]:
        ids = [i for i in self.data or [] if i is not None and i > 0]
        return list(db.scalars(select(self.model).where(self.model.id.in_(ids)))) if ids else []


# ------------------------------------------------------------------ forms


class SettingsForm(FlaskForm):
    """A settings form: ``load(db)`` before validating or rendering, ``values(db)`` to save.
    ``unique`` names the fields the database keeps unique: a value another row has is refused on
    its field before the commit (the commit's IntegrityError stays the fallback for a race)."""

    unique: dict[str, tuple[Any, Any]] = {}  # field name -> (model column, message with %(other)s)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.obj_id = getattr(kwargs.get("obj"), "id", None)
        for field in self:
            if field.name != "csrf_token":
                field.id = f"f-{field.name}"
                field.label.field_id = field.id
        self.db: Session | None = None

    def load(self, db: Session) -> SettingsForm:
        self.db = db
        for field in self:
            if isinstance(field, (Row, Rows, Builder, TimeZone)):
                field.load(db)
        return self

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        for name, (column, message) in self.unique.items():
            field = self[name]
            if field.errors or field.data in (None, "") or self.db is None:
                continue
            model = column.class_
            other = self.db.execute(select(model.id, column).where(column == field.data, model.id != self.obj_id)
                                    if self.obj_id is not None else
                                    select(model.id, column).where(column == field.data)).first()
            if other is not None:
                field.errors.append(str(message) % {"other": other.id})
                valid = False
        return valid

    def fields(self) -> list:
        return [field for field in self if field.name != "csrf_token"]

    def values(self, db: Session) -> dict[str, Any]:
        return {field.name: field.rows(db) if isinstance(field, Rows) else field.data for field in self.fields()}

    def labels(self) -> dict[str, dict[Any, Any]]:
        """Value -> label of each select (the listing shows labels, not ids or codes)."""
        return {field.name: {choice.value: choice.label for choice in field.choices}
                for field in self.fields() if isinstance(field, (Choice, Row))}


def _site(required: bool = True) -> Row:
    return Row(_l("Site"), [Required()] if required else [], model=Site)


class SiteForm(SettingsForm):
    name = Text(_l("Name"), [Required()])
    domains = ListArea(_l("Domains"), v.text_list, description=_l("One per line: example.ru, www.example.ru"))
    default_number = Text(_l("Default number"), parse=v.phone)
    display_format = Text(_l("Display format"), [Required()], length=60,
                          description=_l("X is a digit: +7 (XXX) XXX-XX-XX"))
    timezone = TimeZone(_l("Time zone"), [Required()], description=_l("Working hours of managers and rules are "
                                                                        "read in this zone"))
    hold_seconds = WholeNumber(_l("Hold, seconds"), [Required()], minimum=30, maximum=86400,
                               description=_l("How long a shown pool number stays with a visitor after the last "
                                              "heartbeat"))
    heartbeat_seconds = WholeNumber(_l("Heartbeat, seconds"), [Required()], minimum=5, maximum=3600)
    hold_cap_seconds = WholeNumber(_l("Hold cap, seconds"), [Required()], minimum=60, maximum=7 * 86400)
    unload_grace_seconds = WholeNumber(_l("Grace after leaving, seconds"), [Required()], maximum=86400)
    overflow_policy = Choice(_l("When the pool is full"), [Required()],
                             choices=labelled(allocation.OVERFLOW_POLICIES, OVERFLOW_POLICY_LABELS))
    lazy_allocation = BooleanField(_l("Allocate on interaction only"))
    adaptive_hold = BooleanField(_l("Adaptive hold"), description=_l(
        "When free numbers run low, holds of visitors who stopped sending heartbeats end early so a new visitor "
        "gets a number; visitors still on the page keep theirs"))
    adaptive_free_percent = WholeNumber(_l("Adaptive hold threshold, percent of numbers free"), [Required()], minimum=1,
                                        maximum=90, description=_l(
                                            "The pool counts as running low below this share of free numbers"))
    replace_selectors = ListArea(_l("CSS selectors to replace"), v.text_list)
    replace_numbers = ListArea(_l("Numbers to replace in page text"), v.phone_list)
    default_pool_id = Row(_l("Default pool"), model=NumberPool)
    attribution_window_days = WholeNumber(_l("Attribution window, days"), [Required()], minimum=1, maximum=365)
    attribution_model = Choice(_l("Attribution model"), [Required()],
                               choices=labelled(attribution.ATTRIBUTION_MODELS, ATTRIBUTION_MODEL_LABELS))
    target_call_seconds = WholeNumber(_l("Target call, seconds of talk"), [Required()], maximum=3600)
    crm_url_template = Text(_l("CRM link template"), parse=v.crm_template, length=500,
                            description=_l("Placeholders: {phone}, {phone_digits}, {call_id}, {call_uid}, "
                                           "{caller_name}, {did}"))
    lead_window_days = WholeNumber(_l("Lead window, days"), [Required()], minimum=1, maximum=365, description=_l(
        "A call, form or callback request from the same phone (or e-mail) within this many days of the lead's "
        "last enquiry joins that lead"))
    missed_call_callback = BooleanField(_l("Call back missed calls"), description=_l(
        "astertrack calls the customer back through Asterisk: the manager's phone rings first, then the customer's"))
    calls_retention_days = WholeNumber(_l("Keep calls, days"), minimum=1)
    sessions_retention_days = WholeNumber(_l("Keep sessions, days"), minimum=1)
    recordings_retention_days = WholeNumber(_l("Keep recordings, days"), minimum=1)
    # the visitor's journey (docs/journey.md)
    anonymise_ip = BooleanField(_l("Anonymise visitors' IP addresses"), description=_l(
        "The last part of each address is zeroed before a visit or a form is stored"))
    pageviews_retention_days = WholeNumber(_l("Keep page views, days"), minimum=1, description=_l(
        "Page views and clicks; empty: as long as their session"))
    query_params_allowed = ListArea(_l("Query parameters to keep in page addresses"), v.text_list, description=_l(
        "One per line, besides utm_* and click ids; never one that can carry personal data"))


def _price(places: str) -> Callable[[str], Decimal]:
    """A price typed with a decimal point or comma (and spaces): zero or more, below a billion."""
    def parse(raw: str) -> Decimal:
        try:
            value = Decimal(raw.replace("\u00a0", "").replace(" ", "").replace(",", "."))
        except InvalidOperation:
            raise ValueError(str(_l("Enter an amount such as 450 or 1.35."))) from None
        if not value.is_finite() or value < 0 or value >= Decimal("1e9"):
            raise ValueError(str(_l("Enter an amount such as 450 or 1.35.")))
        return value.quantize(Decimal(places))
    return parse


def _currency(raw: str) -> str:
    code = raw.upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValueError(str(_l("A three-letter currency code, such as RUB.")))
    return code


def _day(raw: str) -> dt.date:
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ValueError(str(_l("A date such as 2026-11-23."))) from None


def _shown_day(value: Any) -> str:
    return value.isoformat() if value else ""


# The prices fields (#27) are stored in ``TrackingPrice``, not on the pool's or number's row:
# ``views._edit`` writes the form's ``PRICE_FIELDS`` there.
class PoolForm(SettingsForm):
    PRICE_FIELDS = ("monthly_rent", "minute_price", "currency")
    site_id = _site()
    name = Text(_l("Name"), [Required()])
    fallback_number = Text(_l("Fallback number"), parse=v.phone)
    monthly_rent = Text(_l("Monthly rent"), parse=_price("0.01"), description=_l(
        "What the carrier charges for each of the pool's numbers a month, unless a number has its own"))
    minute_price = Text(_l("Per-minute price"), parse=_price("0.0001"), description=_l(
        "Per billed minute of a call (talk time rounded up), unless a number has its own"))
    currency = Text(_l("Currency"), parse=_currency, length=3, description=_l("RUB when empty"))


class SourceForm(SettingsForm):
    site_id = _site()
    name = Text(_l("Name"), [Required()])
    kind = Choice(_l("Kind"), [Required()], choices=labelled(sources.SOURCE_KINDS, SOURCE_KIND_LABELS))
    channel = Text(_l("Channel"), length=50, description=_l("cpc, organic, social, referral, offline…"))
    match_rules = Conditions(_l("Match rules"), description=_l(
        "A visit is this source's when every row holds (letters compared ignoring case). A source without "
        "rows is only reached as a site default or by its static number."))
    priority = WholeNumber(_l("Priority"), [Required()], description=_l("Lower is tried first"))
    pool_id = Row(_l("Pool"), model=NumberPool)
    fallback_number = Text(_l("Fallback number"), parse=v.phone)
    enabled = BooleanField(_l("Enabled"))


class NumberForm(SettingsForm):
    unique = {"number": (TrackingNumber.number, _l("This number is already a tracking number (record #%(other)s): "
                                                   "edit that record instead."))}
    number = Text(_l("Number"), [Required()], parse=v.phone)
    site_id = _site()
    source_id = Row(_l("Source"), model=Source)
    pool_id = Row(_l("Pool"), model=NumberPool)
    label = Text(_l("Label"))
    enabled = BooleanField(_l("Enabled"))
    PRICE_FIELDS = ("monthly_rent", "minute_price", "currency", "rented_from", "rented_until")
    monthly_rent = Text(_l("Monthly rent"), parse=_price("0.01"), description=_l(
        "Empty: the pool's rent, if the number is in a pool with one"))
    minute_price = Text(_l("Per-minute price"), parse=_price("0.0001"), description=_l(
        "Empty: the pool's per-minute price"))
    currency = Text(_l("Currency"), parse=_currency, length=3, description=_l("RUB when empty"))
    rented_from = Text(_l("Rented from"), parse=_day, show=_shown_day, render_kw={"type": "date"},
                       description=_l("For a month the number was rented in part: rent counts from this day"))
    rented_until = Text(_l("Rented until"), parse=_day, show=_shown_day, render_kw={"type": "date"},
                        description=_l("The last day of rent; archiving the number ends it too"))


class ManagerForm(SettingsForm):
    unique = {"endpoint": (Manager.endpoint, _l("Another manager (record #%(other)s) already uses this phone "
                                                "endpoint."))}
    name = Text(_l("Name"), [Required()])
    endpoint = Text(_l("Phone endpoint"), [Required()], parse=v.endpoint, description=_l("e.g. PJSIP/101"))
    extension = Text(_l("Extension"), length=40)
    paused = BooleanField(_l("Paused"))
    enabled = BooleanField(_l("Enabled"))
    schedule = Hours(_l("Working hours"), description=_l("In the site's time zone. An end before the start runs "
                                                         "past midnight; 00:00 as the end is midnight."))
    groups = Rows(_l("Groups"), model=ManagerGroup)


class GroupForm(SettingsForm):
    unique = {"name": (ManagerGroup.name, _l("Another group (record #%(other)s) already has this name."))}
    name = Text(_l("Name"), [Required()])
    queue_name = Text(_l("Asterisk queue"), length=80,
                      description=_l("Needed by rules with the Asterisk queue strategy"))
    managers = Rows(_l("Members"), model=Manager)


def _destination_help() -> Any:
    return _l("Kinds: %(kinds)s, e.g. %(examples)s", kinds=", ".join(rules.DESTINATION_KINDS),
              examples=", ".join(v.DESTINATION_EXAMPLES.get(kind, kind) for kind in rules.DESTINATION_KINDS))


class RuleForm(SettingsForm):
    site_id = _site(required=False)
    name = Text(_l("Name"), [Required()])
    priority = WholeNumber(_l("Priority"), [Required()], description=_l("Lower is tried first"))
    enabled = BooleanField(_l("Enabled"))
    match = Match(_l("Calls it takes"), description=_l(
        "No rows: every call. Rows of one kind are alternatives (any of them); rows of different kinds must all "
        "hold. VIP and tags are set on the caller’s profile."))
    group_id = Row(_l("Manager group"), model=ManagerGroup)
    strategy = Choice(_l("Strategy"), [Required()], choices=labelled(rules.STRATEGIES, STRATEGY_LABELS))
    sticky = BooleanField(_l("Personal manager (sticky)"))
    sticky_days = WholeNumber(_l("Sticky for, days"), [Required()], maximum=3650)
    ring_timeout = WholeNumber(_l("Ring timeout, s"), minimum=5, maximum=300)
    max_attempts = WholeNumber(_l("Max attempts"), minimum=1, maximum=20)
    schedule = Hours(_l("Schedule"), description=_l("Outside these hours calls go to the after-hours destination "
                                                    "(site time zone)."))
    after_hours_destination = Text(_l("After hours"), parse=v.destination, description=_destination_help())
    fallback_destination = Text(_l("Fallback"), parse=v.destination, description=_destination_help())

    def validate(self, extra_validators=None) -> bool:
        valid = super().validate(extra_validators)
        if valid and self.strategy.data == "queue":
            group = self.db.get(ManagerGroup, self.group_id.data) if self.db and self.group_id.data else None
            if group is None or not group.queue_name:
                self.group_id.errors.append(str(_l("The Asterisk queue strategy needs a group with an Asterisk "
                                                   "queue name.")))
                valid = False
        return valid


class CallerForm(SettingsForm):
    name = Text(_l("Name"))
    is_vip = BooleanField(_l("VIP"), description=_l("Rules with the row “the caller is VIP” take this caller"))
    tags = ListArea(_l("Tags"), v.tag_list, description=_l(
        "One per line; rules with the row “the caller has the tag” take callers with any of those tags"))
