"""The messenger settings form: the bot token and the WhatsApp secret are typed, never shown back
(an empty field keeps the one saved)."""

from __future__ import annotations

import re

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import Optional, Regexp, ValidationError

TOKEN = re.compile(r"^\d{3,20}:[A-Za-z0-9_-]{20,100}$")


def _token(form, field):
    if field.data and not TOKEN.match(field.data.strip()):
        raise ValidationError(_l("A bot token looks like 123456789:AA… as @BotFather gives it."))


def _secret(form, field):
    if field.data and not re.fullmatch(r"[A-Za-z0-9_-]{16,256}", field.data.strip()):
        raise ValidationError(_l("A secret is 16 to 256 letters, digits, _ or -."))


class MessengerForm(FlaskForm):
    telegram_enabled = BooleanField(_l("Receive messages through the site's Telegram bot"))
    telegram_bot_username = StringField(
        _l("Bot username"), description=_l("Without @; the site's t.me links to this bot carry the visit code."),
        validators=[Optional(), Regexp(r"^@?[A-Za-z][A-Za-z0-9_]{3,31}$", message=_l("A bot username is 5 to 32 letters, digits and _."))])
    telegram_bot_token = PasswordField(_l("Bot token"), description=_l("Leave empty to keep the saved one."),
                                       validators=[_token])
    whatsapp_enabled = BooleanField(_l("Receive messages from a WhatsApp provider's webhook"))
    whatsapp_secret = PasswordField(_l("WhatsApp webhook secret"),
                                    description=_l("The provider sends it in the X-Astertrack-Secret header. Leave empty to keep the saved one."),
                                    validators=[_secret])


class ButtonForm(FlaskForm):
    pass
