"""The controller form; the service does the real validation."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from app.controllers.service import ControllerInput


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").replace(",", "\n").splitlines() if line.strip()]


class ControllerForm(FlaskForm):
    """Create or edit a controller; one address, domain or identifier per line."""

    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    dsr_contacts = TextAreaField("DSR contacts", validators=[DataRequired()])
    breach_contacts = TextAreaField("Breach contacts")
    subprocessor_contacts = TextAreaField("Sub-processor notice contacts")
    domains = TextAreaField("Email domains")
    identifiers = TextAreaField("Account identifiers")
    status = SelectField("Status", choices=[SelectChoice("active", "Active"), SelectChoice("terminated", "Terminated")])
    terminated_on = DateField("Termination date", validators=[Optional()])
    termination_option = SelectField(
        "On termination",
        choices=[SelectChoice("", "—"), SelectChoice("return", "Return the data"), SelectChoice("delete", "Delete the data")],
        validate_choice=False,  # the service checks it, and only when the status needs it
    )

    def to_input(self) -> ControllerInput:
        """The service's input from the submitted form."""
        return ControllerInput(
            name=self.name.data or "",
            dsr_contacts=_lines(self.dsr_contacts.data),
            breach_contacts=_lines(self.breach_contacts.data),
            subprocessor_contacts=_lines(self.subprocessor_contacts.data),
            domains=_lines(self.domains.data),
            identifiers=_lines(self.identifiers.data),
            status=self.status.data or "active",
            terminated_on=self.terminated_on.data,
            termination_option=self.termination_option.data or None,
        )

    def add_errors(self, errors: dict[str, str]) -> None:
        """Show the service's refusals beside their fields."""
        for name, message in errors.items():
            getattr(self, name, self.name).errors.append(message)
