"""The lead card's forms (WTForms via Flask-WTF): the state and deal, and the buttons that only
need the CSRF token (merge, call back).  Choices and the amount's rules are the core's
(``astertrack.leads.STATES``, ``astertrack.leads.deals``), so the card and the CRM endpoint agree."""

from __future__ import annotations

from babel.numbers import get_currency_name
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, ValidationError
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length

from astertrack.leads import STATES
from astertrack.leads.deals import currencies, parse_amount
from astertrack.leads.errors import LeadError
from webadmin.labels import label_for

COMMON_CURRENCIES = ("RUB", "USD", "EUR", "KZT", "BYN", "UAH", "CNY")  # first in the picker
# What the card says for each of the core's refusals (the core's own messages are for logs and the API)
FIELD_ERRORS = {
    "amount": _l("Write the amount as a number (15000 or 15000.50), not negative, at most 999999999999.99."),
    "currency": _l("Pick the currency from the list."),
    "state": _l("Pick the state from the list."),
}


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def currency_choices() -> list[SelectChoice]:
    """Every currency the core accepts, the common ones first, named in the page's language
    ("EUR · евро"): a bare code list reads as untranslated text to a Russian user."""
    known = currencies()
    common = [code for code in COMMON_CURRENCIES if code in known]
    locale = get_locale() or "en"
    return [SelectChoice(code, f"{code} · {get_currency_name(code, locale=locale)}")
            for code in (*common, *sorted(known - set(common)))]


class StateForm(FlaskForm):
    """A lead's state, and its deal's amount and currency (an empty amount keeps the one known)."""

    status = SelectField(_l("State"), [InputRequired()])
    amount = StringField(_l("Deal amount"), [Length(max=30)], filters=[_strip],
                         render_kw={"inputmode": "decimal", "size": 14, "autocomplete": "off"})
    currency = SelectField(_l("Currency"), default="RUB")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.status.choices = [SelectChoice(state, label_for(state, "lead_status")) for state in STATES]
        self.currency.choices = currency_choices()

    def validate_amount(self, field) -> None:
        try:
            parse_amount(field.data)
        except LeadError:
            raise ValidationError(str(FIELD_ERRORS["amount"])) from None

    def field_for(self, lead_field: str):
        """The form field of a core refusal's ``field`` ("state" is the status picker)."""
        return {"state": self.status, "amount": self.amount, "currency": self.currency}.get(lead_field, self.status)


class ButtonForm(FlaskForm):
    """A button that only needs the CSRF token (merge after confirmation, call back)."""
