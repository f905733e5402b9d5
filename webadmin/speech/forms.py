"""The speech forms: choices come from the core's vocabularies (the engine registry, speakers)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, Regexp

from astertrack.speech import engines

SPEAKER_CHOICES = [SelectChoice("any", _l("Either side")), SelectChoice("caller", _l("Caller")),
                   SelectChoice("manager", _l("Manager"))]


class EngineForm(FlaskForm):
    # the engines' own names, the same in every language
    engine = SelectField(_l("Engine"), choices=[SelectChoice(name) for name in engines.names()],
                         render_kw={"translate": "no"})
    model_path = StringField(_l("Model path"), validators=[Optional(), Length(max=1024)],
                             description=_l("A folder or file on this server; pocketsphinx needs none (its English "
                                            "model is bundled), Vosk, whisper.cpp and faster-whisper need one."))
    language = StringField(_l("Language"), validators=[Optional(), Length(max=10),
                                                       Regexp(r"^[a-z]{2}(-[A-Za-z]{2})?$",
                                                              message=_l("A language code such as ru or en."))])


class PhraseForm(FlaskForm):
    tag = StringField(_l("Tag"), validators=[DataRequired(), Length(max=80)])
    phrase = StringField(_l("Phrase"), validators=[DataRequired(), Length(max=200)],
                         description=_l("Any word form matches: «цена» finds «ценой» and «цену»."))
    speaker = SelectField(_l("Said by"), choices=SPEAKER_CHOICES, default="any")
    negative = BooleanField(_l("Needs attention (a negative tag)"))


class ButtonForm(FlaskForm):
    pass
