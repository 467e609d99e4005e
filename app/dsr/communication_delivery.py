"""What became of a communication's forward (Pexgle §11.2): one that does not reach the controller is escalated at once.

A complaint, an authority's letter or a lawyer's notice must reach the controller *immediately*. When the relay
refuses its forward, gives up on it, or a bounce comes back (issue 11 item 4: "the same for any later notice kind"),
every privacy officer is emailed at once with the relay's answer and the controller's other contacts, and the ticket
gets a note saying so; the audit log records it. Registered as a delivery hook (`app.dsr.setup.register_delivery`).
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy.orm import Session

from app.audit.service import record
from app.controllers.models import CONTACT_KINDS, Controller
from app.dsr.communication import KIND
from app.dsr.delivery import GIVEN_UP, email_officers
from app.mail.models import OutboxEmail
from app.mail.outcomes import DeliveryOutcome
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Ticket

log = logging.getLogger(__name__)

DELIVERY = Principal.system("communication delivery")


def on_delivery(session: Session, outcome: DeliveryOutcome, *, now: dt.datetime) -> None:
    """The delivery hook: a communication's forward bounced, failed or was refused -> officers emailed, ticket noted (flush only)."""
    if outcome.kind != KIND or outcome.state not in GIVEN_UP or outcome.related_type != "ticket" or outcome.related_id is None:
        return
    ticket = session.get(Ticket, outcome.related_id)
    row = session.get(OutboxEmail, outcome.outbox_id)
    if ticket is None or row is None:
        return
    controller = session.get(Controller, ticket.controller_id) if ticket.controller_id is not None else None
    name = controller.name if controller is not None else "its controller"
    others = [f"  {kind}: {a}" for kind in CONTACT_KINDS for a in (controller.contact_emails(kind) if controller else []) if a and a != row.to_addr]
    what = "bounced" if outcome.state == "bounced" else "was not delivered (the mail relay refused it or gave up)"
    body = (
        f"The forward of the communication on {ticket.reference} to {name} {what}: {row.to_addr}.\n"
        f"The relay answered: {outcome.answer}\n\n"
        "Pexgle §11.2 asks that the controller be told immediately; pass it on another way and note what you did.\n"
        + ("Other contacts of the controller you could use:\n" + "\n".join(others) + "\n" if others else "The controller has no other contact on record.\n")
        + f"Open /tickets/{ticket.id}.\n"
    )
    domain = str(row.message_id).strip("<>").rpartition("@")[2] or "desk.localhost"
    subject = f"Escalation: the communication on {ticket.reference} did not reach the controller"
    officers = email_officers(session, subject=subject, body=body, related_type="ticket", related_id=ticket.id, msgid_domain=domain, by=DELIVERY, now=now)
    note = f"The communication's forward to {row.to_addr} {what}; {officers} privacy officer(s) alerted. Pass it on another way."
    tickets.add_message(
        session,
        ticket,
        tickets.MessageInput(direction="note", body_text=note, notes=[{"code": "communication_undelivered", "outbox_id": row.id}]),
        by=DELIVERY,
        now=now,
    )
    record(
        session,
        by=DELIVERY,
        action="communication.undelivered",
        target_type="ticket",
        target_id=ticket.id,
        controller_id=ticket.controller_id,
        details={"outbox_id": row.id, "outcome": outcome.state, "officers": officers},
        now=now,
    )
    log.warning("ticket %s: communication forward %s not delivered (%s); %d privacy officer(s) alerted", ticket.id, row.id, outcome.state, officers)
