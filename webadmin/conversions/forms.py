"""The settings-and-rules form: secrets are typed, never shown back (an empty field keeps the one
saved); every value goes through the core's checks, whose error codes get translated messages."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import ValidationError

from astertrack.integrations.conversions import rules

ERRORS = {"measurement_id": _l("A GA4 measurement id looks like G-XXXXXXXXXX."),
          "counter_id": _l("A Metrica counter id is a number."),
          "event_name": _l("An event name is letters, digits and underscores, starting with a letter (at most 40)."),
          "currency": _l("A currency is a three-letter ISO code such as RUB."),
          "timezone": _l("Unknown time zone."),
          "value": _l("Enter an amount of zero or more, such as 1500 or 1500.50.")}
CALL_RULES = {"off": _l("No calls"), "all": _l("Every call"), "answered": _l("Answered calls"),
              "target": _l("Target calls (answered, talk at least the site's target seconds)")}
LEAD_STATES = {"": _l("Leads are not sent"), "qualified": _l("Lead qualified"), "won": _l("Deal won")}
LEAD_VALUES = {"amount": _l("The deal's amount (else the fixed value)"), "fixed": _l("The fixed value")}


def _checked(check):
    def validate(form, field):
        try:
            field.data = check(field.data)
        except rules.SettingsError as exc:
            raise ValidationError(ERRORS[exc.code]) from exc
    return validate


class ConversionForm(FlaskForm):
    ga4_enabled = BooleanField(_l("Send to Google Analytics 4"))
    ga4_measurement_id = StringField(_l("GA4 measurement id"), validators=[_checked(rules.check_measurement_id)])
    ga4_api_secret = PasswordField(_l("GA4 Measurement Protocol API secret"),
                                   description=_l("Leave empty to keep the saved one."))
    ga4_call_event = StringField(_l("GA4 event for a call"),
                                 validators=[_checked(lambda v: rules.check_event_name(v, "phone_call"))])
    ga4_lead_event = StringField(_l("GA4 event for a lead"),
                                 validators=[_checked(lambda v: rules.check_event_name(v, "close_convert_lead"))])
    metrica_enabled = BooleanField(_l("Send to Yandex Metrica"))
    metrica_counter_id = StringField(_l("Metrica counter id"), validators=[_checked(rules.check_counter_id)])
    metrica_token = PasswordField(_l("Metrica OAuth token"), description=_l("Leave empty to keep the saved one."))
    google_ads_enabled = BooleanField(_l("Google Ads upload file"))
    google_ads_conversion_name = StringField(_l("Google Ads conversion name"))
    google_ads_timezone = StringField(_l("Google Ads time zone"), validators=[_checked(rules.check_timezone)],
                                      description=_l("Empty: the site's time zone."))
    currency = StringField(_l("Currency"), validators=[_checked(rules.check_currency)])
    calls = SelectField(_l("Calls that count"), choices=[SelectChoice(k, v) for k, v in CALL_RULES.items()])
    first_time_only = BooleanField(_l("First-time callers only"))
    call_value = StringField(_l("Value of a call"), validators=[_checked(rules.check_money)])
    lead_state = SelectField(_l("Leads that count"), choices=[SelectChoice(k, v) for k, v in LEAD_STATES.items()])
    lead_value = SelectField(_l("Value of a lead"), choices=[SelectChoice(k, v) for k, v in LEAD_VALUES.items()])
    lead_fixed_value = StringField(_l("Fixed value of a lead"), validators=[_checked(rules.check_money)])

    def validate_google_ads_conversion_name(self, field):
        field.data = (field.data or "").strip()[:100] or None
        if self.google_ads_enabled.data and not field.data:
            raise ValidationError(_l("Enter the conversion name as it is in Google Ads."))

    def validate_ga4_api_secret(self, field):
        field.data = (field.data or "").strip() or None
        if field.data and len(field.data) > 200:
            raise ValidationError(_l("Too long."))

    def validate_metrica_token(self, field):
        field.data = (field.data or "").strip() or None
        if field.data and len(field.data) > 200:
            raise ValidationError(_l("Too long."))


class FilterForm(FlaskForm):
    """Only the CSRF token: send now."""
