"""The user form (WTForms via Flask-WTF).  Roles and languages come from the admin's own
constants (``security.ROLES``, ``i18n.LOCALES``), managers from the database."""

from __future__ import annotations

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Regexp, ValidationError

from astertrack.db.models import Manager, User
from astertrack.passwords import MIN_LENGTH, verify_password
from webadmin.i18n import LOCALES
from webadmin.labels import label_for
from webadmin.security import ROLES


def _int_or_none(value):
    return int(value) if value not in (None, "") else None


class UserForm(FlaskForm):
    login = StringField(_l("Login"), [DataRequired(), Regexp(r"^[A-Za-z0-9._@-]{2,80}$", message=_l(
        "2–80 letters, digits, dots, dashes, @ or underscores."))], filters=[lambda s: s.strip() if s else s])
    role = SelectField(_l("Role"), default="manager")
    manager_id = SelectField(_l("Manager"), coerce=_int_or_none, validate_choice=False, description=_l(
        "A user linked to a manager gets the incoming-call pop-up for that manager’s phone."))
    locale = SelectField(_l("Language"), coerce=lambda v: v or None)
    active = BooleanField(_l("Active"), default=True)
    password = PasswordField(_l("Password"), render_kw={"autocomplete": "new-password"})

    def __init__(self, db: Session, user: User | None, acting_user_id: int | None, **kwargs):
        super().__init__(obj=user, **kwargs)
        self.db, self.user, self.acting_user_id = db, user, acting_user_id
        self.role.choices = [SelectChoice(role, label_for(role)) for role in ROLES]
        # Archived managers leave the picker; a user still linked to one keeps it, marked, so saving
        # another field does not unlink them.
        linked = user.manager_id if user is not None else None
        self.manager_id.choices = [SelectChoice("", "—")] + [
            SelectChoice(mid, name if archived is None else _("%(name)s (archived)", name=name))
            for mid, name, archived in db.execute(
                select(Manager.id, Manager.name, Manager.archived_at)
                .where(or_(Manager.archived_at.is_(None), Manager.id == linked)).order_by(Manager.name))]
        self.locale.choices = [SelectChoice("", _l("from the browser"))] + [SelectChoice(code, label_for(code, "locale"))
                                                                              for code in LOCALES]
        if user is not None:
            self.password.description = _l(
                "Leave empty to keep the current password. Changing it ends the user’s sessions.")
        else:
            self.password.flags.required = True

    def fields(self) -> list:
        """What ``settings/_form.html`` renders: every field but the CSRF token."""
        return [field for field in self if field.name != "csrf_token"]

    def validate_role(self, field) -> None:
        if field.data not in ROLES:
            raise ValidationError(_l("Choose a role."))
        if (self.user is not None and self.user.id == self.acting_user_id
                and (field.data != "admin" or not self.active.data)):
            raise ValidationError(_l("You cannot remove your own admin access."))

    def validate_manager_id(self, field) -> None:
        manager = self.db.get(Manager, field.data) if field.data is not None else None
        if manager is None:
            field.data = None  # a manager deleted meanwhile: nothing to link
        elif manager.archived_at is not None and manager.id != (self.user.manager_id if self.user else None):
            raise ValidationError(_l("This manager is archived: restore it in the settings first."))
        if self.role.data == "manager" and field.data is None:
            raise ValidationError(_l("A manager user must be linked to a manager (phone)."))

    def validate_locale(self, field) -> None:
        if field.data not in (None, *LOCALES):
            raise ValidationError(_l("Choose a language."))

    def validate_password(self, field) -> None:
        if (self.user is None or field.data) and len(field.data or "") < MIN_LENGTH:
            raise ValidationError(_l("At least %(n)s characters.", n=MIN_LENGTH))


class OwnPasswordForm(FlaskForm):
    """A user's own password change: the current one proves it is them, the new one twice."""

    current = PasswordField(_l("Current password"), [DataRequired()], render_kw={"autocomplete": "current-password"})
    new = PasswordField(_l("New password"), [DataRequired()], render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(_l("New password again"), [DataRequired()], render_kw={"autocomplete": "new-password"})

    def __init__(self, user: User, **kwargs):
        super().__init__(**kwargs)
        self.user = user

    def fields(self) -> list:
        """What ``settings/_form.html`` renders: every field but the CSRF token."""
        return [field for field in self if field.name != "csrf_token"]

    def validate_current(self, field) -> None:
        if not verify_password(self.user.password_hash, field.data or ""):
            raise ValidationError(_l("The current password is wrong."))

    def validate_new(self, field) -> None:
        if len(field.data or "") < MIN_LENGTH:
            raise ValidationError(_l("At least %(n)s characters.", n=MIN_LENGTH))
        if field.data == self.current.data:
            raise ValidationError(_l("The new password must differ from the current one."))

    def validate_confirm(self, field) -> None:
        if field.data != self.new.data:
            raise ValidationError(_l("The two new passwords differ."))
