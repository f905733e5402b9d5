"""The widget's settings form: every value through the core's checks (astertrack.leads.widget), the
texts one field per language and text (empty: the default, shown as the placeholder)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import NumberRange, Optional, ValidationError

from astertrack.leads import widget as core

POSITIONS = {"bottom-right": _l("Bottom right"), "bottom-left": _l("Bottom left")}
TEXT_LABELS = {"popup_title": _l("Pop-up: title"), "popup_offer": _l("Pop-up: offer"),
               "popup_button": _l("Pop-up: button"), "popup_thanks": _l("Pop-up: thank-you"),
               "callback_title": _l("Callback: title"), "callback_offer": _l("Callback: offer in working hours"),
               "callback_later": _l("Callback: out of hours ({time} is the next opening)"),
               "callback_button": _l("Callback: button"), "callback_thanks": _l("Callback: thank-you"),
               "chat_title": _l("Chat: title and button"), "chat_greeting": _l("Chat: greeting"),
               "chat_placeholder": _l("Chat: message box"), "chat_send": _l("Chat: send button"),
               "chat_ask_phone": _l("Chat: asking for a phone when nobody answers"),
               "chat_phone_button": _l("Chat: phone button"), "chat_thanks": _l("Chat: thank-you for the phone"),
               "chat_offline_title": _l("Chat out of hours: form title"),
               "chat_offline_offer": _l("Chat out of hours: form offer"),
               "chat_offline_thanks": _l("Chat out of hours: thank-you"), "chat_closed": _l("Chat: closed"),
               "chat_typing": _l("Chat: the manager is typing"), "chat_read": _l("Chat: read mark")}
LANGUAGE_LABELS = {"ru": _l("Russian"), "en": _l("English")}
ERRORS = {"colour": _l("A colour is # and six hex digits, such as #1f6feb."),
          "popup_url_contains": _l("At most 20 lines, each at most 200 characters."),
          "popup_utm": _l("One utm pair a line, such as utm_source=google (at most 20).")}


def _checked(check):
    def validate(form, field):
        try:
            field.data = check(field.data, field.name)
        except core.WidgetError as exc:
            raise ValidationError(ERRORS[exc.field]) from exc
    return validate


class WidgetForm(FlaskForm):
    popup_enabled = BooleanField(_l("Lead-capture pop-up"))
    callback_enabled = BooleanField(_l("Callback button"))
    chat_enabled = BooleanField(_l("Chat"))
    chat_wait_seconds = IntegerField(_l("Chat: ask for a phone when no manager replied within this many seconds"),
                                     default=90, validators=[Optional(), NumberRange(10, 3600)])
    chat_retention_days = IntegerField(_l("Chat: keep conversations this many days (0: forever)"), default=365,
                                       validators=[Optional(), NumberRange(0, 3650)])
    colour = StringField(_l("Colour"), validators=[_checked(lambda v, _n: core.clean_colour(v))])
    position = SelectField(_l("Position"), choices=[SelectChoice(k, v) for k, v in POSITIONS.items()])
    popup_delay_seconds = IntegerField(_l("Show after this many seconds (0: at once)"), default=0,
                                       validators=[Optional(), NumberRange(0, 3600)])
    popup_exit_intent = BooleanField(_l("Show when the mouse leaves the page to the top (desktop)"))
    popup_page_views = IntegerField(_l("Show from the visitor's Nth page view (0: any)"), default=0,
                                    validators=[Optional(), NumberRange(0, 100)])
    popup_url_contains = TextAreaField(_l("Only on pages whose address contains (one a line)"),
                                       validators=[_checked(lambda v, n: core.clean_lines(v, n))])
    popup_utm = TextAreaField(_l("Or on visits with these utm values (utm_source=google, one a line)"),
                              validators=[_checked(lambda v, n: core.clean_lines(v, n, utm=True))])
    popup_period_days = IntegerField(_l("At most once per visitor in this many days (0: every time)"), default=7,
                                     validators=[Optional(), NumberRange(0, 365)])


for _lang in core.LANGUAGES:
    for _key in core.TEXT_KEYS:
        setattr(WidgetForm, f"text_{_lang}_{_key}", StringField(
            TEXT_LABELS[_key], description=LANGUAGE_LABELS[_lang],
            # the visitor's text in that language, not the admin's: marked so (and left untranslated)
            render_kw={"placeholder": core.DEFAULT_TEXTS[_lang][_key], "maxlength": core.TEXT_MAX,
                       "lang": _lang, "translate": "no"}))
