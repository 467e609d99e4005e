"""The controller form; the service does the real validation."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from app.controllers.models import Controller
from app.controllers.service import ControllerInput


def _lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").replace(",", "\n").splitlines() if line.strip()]


class ControllerForm(FlaskForm):
    """Create or edit a controller; one address, domain or identifier per line."""

    # No required/length checks here: the service checks every field in one pass, so the form shows all its errors at once.
    name = StringField("Name")
    dsr_contacts = TextAreaField("DSR contacts")
    breach_contacts = TextAreaField("Breach contacts")
    subprocessor_contacts = TextAreaField("Sub-processor notice contacts")
    domains = TextAreaField("Email domains")
    identifiers = TextAreaField("Account identifiers")
    status = SelectField("Status", choices=[SelectChoice("active", "Active"), SelectChoice("terminated", "Terminated")], validate_choice=False)
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

    def fill(self, controller: Controller) -> None:
        """Show a controller's current values (the edit page's GET)."""
        self.name.data = controller.name
        for kind in ("dsr", "breach", "subprocessor"):
            getattr(self, f"{kind}_contacts").data = "\n".join(controller.contact_emails(kind))
        self.domains.data = "\n".join(d.domain for d in controller.domains)
        self.identifiers.data = "\n".join(i.identifier for i in controller.identifiers)
        self.status.data = controller.status
        self.terminated_on.data = controller.terminated_on
        self.termination_option.data = controller.termination_option or ""

    def add_errors(self, errors: dict[str, str]) -> None:
        """Show the service's refusals beside their fields."""
        for name, message in errors.items():
            getattr(self, name, self.name).errors.append(message)
