"""Review forms on the call card and the checklist page (WTForms via Flask-WTF)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange
from wtforms.widgets import CheckboxInput, ListWidget

from astertrack.review.actions import COMMENT_MAX, ITEM_TEXT_MAX, TAG_MAX
from astertrack.review.scoring import MAX_ITEM_POINTS


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class TagForm(FlaskForm):
    name = StringField(_l("Tag"), [DataRequired(), Length(max=TAG_MAX)], filters=[_strip],
                       render_kw={"list": "known-tags", "autocomplete": "off", "maxlength": TAG_MAX})


class CommentForm(FlaskForm):
    text = TextAreaField(_l("Comment"), [DataRequired(), Length(max=COMMENT_MAX)], filters=[_strip],
                         render_kw={"rows": 3, "maxlength": COMMENT_MAX})


class ScoreForm(FlaskForm):
    """The call's checklist as checkboxes; choices are the checklist's live items."""

    items = SelectMultipleField(_l("Checklist"), coerce=int, widget=ListWidget(prefix_label=False),
                                option_widget=CheckboxInput())


class ActionForm(FlaskForm):
    """A button that only needs the CSRF token (mark handled, undo, remove a tag, archive)."""


def _int_or_none(value):
    return int(value) if value not in (None, "", "None") else None


class ChecklistItemForm(FlaskForm):
    text = StringField(_l("Item"), [DataRequired(), Length(max=ITEM_TEXT_MAX)], filters=[_strip])
    points = IntegerField(_l("Points"), [InputRequired(), NumberRange(min=1, max=MAX_ITEM_POINTS)], default=1)
    site_id = SelectField(_l("Site"), coerce=_int_or_none, validate_choice=False)
    position = IntegerField(_l("Order"), [InputRequired(), NumberRange(min=0, max=9999)], default=0)

    def fields(self) -> list:
        """What ``settings/_form.html`` renders: every field but the CSRF token."""
        return [field for field in self if field.name != "csrf_token"]
