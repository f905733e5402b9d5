"""The chats page's forms (WTForms via Flask-WTF: the CSRF token rides in each).  The script
posts them as ordinary form bodies and reads JSON back; the core checks the text and the message
id (``chat.conversations.clean_message``, ``clean_client_id``) and says what it refused."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField
from wtforms.validators import InputRequired, NumberRange, Optional

from astertrack.chat import TEXT_MAX


class ButtonForm(FlaskForm):
    """Claim, close, typing: nothing but the CSRF token."""


class ReplyForm(FlaskForm):
    # the core trims and limits the text; the raw limit here only stops a huge body early
    text = StringField(validators=[InputRequired()], filters=[lambda v: v if v is None else v[:TEXT_MAX * 2]])
    client_id = StringField(validators=[Optional()], filters=[lambda v: v or None])


class TransferForm(FlaskForm):
    manager_id = SelectField(coerce=int, validators=[InputRequired()])


class ReadForm(FlaskForm):
    seq = IntegerField(validators=[InputRequired(), NumberRange(min=0)])


class AwayForm(FlaskForm):
    away = BooleanField()
