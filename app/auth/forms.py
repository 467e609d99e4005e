"""Login, MFA, account and admin forms; the service does the real validation."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectField, SelectMultipleField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from app.auth.models import ROLES

ROLE_LABELS = {"agent": "Agent", "privacy_officer": "Privacy officer", "admin": "Admin", "auditor": "Auditor"}


class LoginForm(FlaskForm):
    """Step one: email and password."""

    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    # No max length here: the service answers an over-long password like a wrong one.
    password = PasswordField("Password", validators=[DataRequired()])


class CodeForm(FlaskForm):
    """Step two: a code from the authenticator app, or a recovery code."""

    code = StringField("Code", validators=[DataRequired(), Length(max=40)], render_kw={"autocomplete": "one-time-code", "inputmode": "text"})


class PasswordChangeForm(FlaskForm):
    """Change one's own password."""

    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", validators=[DataRequired()])
    confirm = PasswordField("New password again", validators=[DataRequired()])


class ReauthForm(FlaskForm):
    """Re-enter the password before a sensitive change."""

    password = PasswordField("Password", validators=[DataRequired()])


class ActionForm(FlaskForm):
    """An empty form: a POST button with its CSRF token."""


def _role_choices() -> list[SelectChoice]:
    return [SelectChoice(r, ROLE_LABELS[r]) for r in ROLES]


class UserForm(FlaskForm):
    """Create a staff account (admin UI)."""

    # The service checks the address, the role and the controllers in one pass: the form shows all its errors at once.
    email = EmailField("Email")
    role = SelectField("Role", choices=_role_choices(), validate_choice=False)
    controllers = SelectMultipleField("Assigned controllers", coerce=int, validate_choice=False)


class RoleForm(FlaskForm):
    """Change a staff member's role and controllers (admin UI)."""

    role = SelectField("Role", choices=_role_choices())
    controllers = SelectMultipleField("Assigned controllers", coerce=int, validate_choice=False)
