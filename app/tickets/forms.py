"""Forms of the staff ticket pages; every one carries the CSRF token (Flask-WTF)."""

from __future__ import annotations

from typing import TypeVar

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from app import typed_text
from app.exceptions import Refused
from app.tickets.models import STATUSES

STATUS_CHOICES = [SelectChoice(s, s) for s in STATUSES]


# Text a person types: generous, but bounded so a paste accident is refused, not stored.
MAX_BODY = 100_000


class TypedText:
    """A WTForms validator: refuses what `app.typed_text.problem` finds (control characters, nothing visible)."""

    def __call__(self, form: FlaskForm, field: object) -> None:
        data = getattr(field, "data", None)
        found = typed_text.problem(data) if isinstance(data, str) and data else None
        if found is not None:
            raise ValidationError(f"the text {found}")


class ReplyForm(FlaskForm):
    """A reply to the requester: stored on the ticket and queued in the outbox in one transaction."""

    # Field names differ per form: both sit on one page and each label must point at its own box.
    reply = TextAreaField("Reply to the requester", validators=[DataRequired(), Length(max=MAX_BODY), TypedText()])
    status_after = SelectField("Then set the status to", choices=STATUS_CHOICES, default="waiting")


class NoteForm(FlaskForm):
    """An internal note: staff only, never mailed."""

    note = TextAreaField("Internal note", validators=[DataRequired(), Length(max=MAX_BODY), TypedText()])


class StatusForm(FlaskForm):
    """Change the ticket's status."""

    status = SelectField("Status", choices=STATUS_CHOICES)


class AssignForm(FlaskForm):
    """Assign the ticket to a staff member ("" unassigns); choices are set per ticket."""

    assignee = SelectField("Assignee", choices=[], validate_choice=True)


class MoveForm(FlaskForm):
    """Route a ticket to a controller (out of triage, or away from a wrong one); choices are set per request."""

    controller = SelectField("Controller", choices=[], validate_choice=True)


class AttachmentForm(FlaskForm):
    """Add a file to the ticket (as an internal note carrying it)."""

    file = FileField("File", validators=[FileRequired()])
    comment = StringField("Comment", validators=[Optional(), Length(max=2000), TypedText()])


class SearchForm(FlaskForm):
    """Search by ticket reference or requester email; sent by POST so the address never lands in a URL or log."""

    q = StringField("Reference or requester email", validators=[DataRequired(), Length(max=320)])


class ActionForm(FlaskForm):
    """A button that changes something (release, delete): only the CSRF token."""


def form_errors(form: FlaskForm) -> str:
    """What was wrong with a submitted form, field by field, as one message to flash."""
    return "; ".join(f"{getattr(form, name).label.text}: {', '.join(errors)}" for name, errors in form.errors.items()) or "The form was incomplete."


F = TypeVar("F", bound=FlaskForm)


def submitted(form: F) -> F:
    """The form, validated; else Refused naming what was wrong (flashed, back to the form's page: app.errors)."""
    if not form.validate_on_submit():
        raise Refused(form_errors(form))
    return form
