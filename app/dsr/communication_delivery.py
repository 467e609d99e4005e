"""What became of a communication's forward (Pexgle §11.2): one that does not reach the controller is escalated at once.

A complaint, an authority's letter or a lawyer's notice must reach the controller *immediately*. When the relay
refuses its forward, gives up on it, or a bounce comes back (issue 11 item 4: "the same for any later notice kind"),
every privacy officer is emailed at once with the relay's answer and the controller's other contacts, and the ticket
gets a note saying so; the audit log records it. Registered as a delivery hook (`app.dsr.setup.register_delivery`).

The ticket keeps `communication_undelivered_at` (the first such time) so the escalation banner shows it to privacy
officers until one of them records how it was passed on another way (`passed_on`) or a later forward of a
communication on the ticket is delivered (the same hook, with state "sent").
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection

from sqlalchemy import update
from sqlalchemy.orm import Session

from app import typed_text
from app.audit.service import record
from app.controllers.models import CONTACT_KINDS, Controller
from app.dsr.communication import KIND
from app.dsr.delivery import GIVEN_UP, email_officers
from app.dsr.errors import DsrError
from app.exceptions import Refused
from app.mail.models import OutboxEmail
from app.mail.outcomes import DeliveryOutcome
from app.principal import Principal
from app.tickets import service as tickets
from app.tickets.models import Ticket

log = logging.getLogger(__name__)

DELIVERY = Principal.system("communication delivery")
# What staff write about how they passed a communication on (stored encrypted in the ticket's note, never audited).
PASSED_ON_CHARS = 2_000


class NotPassedOn(DsrError, Refused, ValueError):
    """`passed_on` refused: no undelivered communication on the ticket, or no words on what was done (safe to show)."""


def _mark(session: Session, ticket: Ticket, *, undelivered: bool, now: dt.datetime) -> bool:
    """Set (keeping the first time) or clear the ticket's alert in one conditional UPDATE; True if this call changed it."""
    column = Ticket.communication_undelivered_at
    statement = update(Ticket).where(Ticket.id == ticket.id, column.is_(None) if undelivered else column.is_not(None))
    done = session.execute(statement.values(communication_undelivered_at=now if undelivered else None).execution_options(synchronize_session=False))
    session.expire(ticket, ["communication_undelivered_at"])  # read again when next asked, whatever this call did
    return getattr(done, "rowcount", 0) == 1


def on_delivery(session: Session, outcome: DeliveryOutcome, *, now: dt.datetime) -> None:
    """The delivery hook: a communication's forward bounced, failed or was refused -> officers emailed, ticket noted and
    marked for the banner; a later one delivered ("sent") -> the mark cleared and noted (flush only)."""
    if outcome.kind != KIND or outcome.related_type != "ticket" or outcome.related_id is None:
        return
    if outcome.state == "sent":
        _delivered(session, outcome, now=now)
        return
    if outcome.state not in GIVEN_UP:
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
    _audit(session, ticket, "communication.undelivered", {"outbox_id": row.id, "outcome": outcome.state, "officers": officers}, by=DELIVERY, now=now)
    _mark(session, ticket, undelivered=True, now=now)  # the banner (issue 11 item 4); a later give-up keeps the first time
    log.warning("ticket %s: communication forward %s not delivered (%s); %d privacy officer(s) alerted", ticket.id, row.id, outcome.state, officers)


def _delivered(session: Session, outcome: DeliveryOutcome, *, now: dt.datetime) -> None:
    # Another forward of a communication on the ticket reached the controller's relay: nothing left to pass on.
    ticket = session.get(Ticket, outcome.related_id)
    if ticket is None or not _mark(session, ticket, undelivered=False, now=now):
        return
    note = "A later forward of the communication was delivered to the controller's mail server; the escalation is cleared."
    data = tickets.MessageInput(direction="note", body_text=note, notes=[{"code": "communication_delivered", "outbox_id": outcome.outbox_id}])
    tickets.add_message(session, ticket, data, by=DELIVERY, now=now)
    _audit(session, ticket, "communication.delivered", {"outbox_id": outcome.outbox_id, "outcome": "sent"}, by=DELIVERY, now=now)


def passed_on(session: Session, ticket_id: int, what: str, *, controller_ids: Collection[int] | None = None, by: Principal, now: dt.datetime) -> Ticket:
    """Record that a privacy officer passed an undelivered communication on another way (Pexgle §11.2, issue 11 item 4).

    `what` says what was done ("phoned the controller's DPO"): it becomes a note on the ticket (encrypted, like every
    note), the audit event carries ids and a count only, and the ticket's mark is cleared, so the banner stops counting
    it. Returns the ticket. Raises TicketNotFound for no such ticket (or one outside `controller_ids`); NotPassedOn,
    nothing changed, when `what` has no visible character (blank, or only invisible format characters), holds a
    control character other than a line break (CR, LF) or tab, is longer than PASSED_ON_CHARS, or the ticket has no undelivered
    communication (never had one, or it was already passed on). Flush only.
    """
    ticket = tickets.get_ticket(session, ticket_id, controller_ids=controller_ids, include_triage=controller_ids is None)
    text = what.strip()
    if not text:
        raise NotPassedOn("Say how the communication was passed on (for example: phoned the controller's DPO).")
    found = typed_text.problem(text)
    if found is not None:
        raise NotPassedOn(f"Say how the communication was passed on: the text {found}.")
    if len(text) > PASSED_ON_CHARS:
        raise NotPassedOn(f"Say how it was passed on in at most {PASSED_ON_CHARS:,} characters.")
    since = ticket.communication_undelivered_at
    # The conditional UPDATE decides, so two officers posting at once record it once.
    if since is None or not _mark(session, ticket, undelivered=False, now=now):
        raise NotPassedOn("This ticket has no communication waiting to be passed on: nothing was changed.")
    author = by.id if by.kind == "staff" else None
    data = tickets.MessageInput(direction="note", body_text=f"Passed on another way: {text}", author_id=author, notes=[{"code": "communication_passed_on"}])
    tickets.add_message(session, ticket, data, by=by, now=now)
    _audit(session, ticket, "communication.passed_on", {"undelivered_minutes": max(0, int((now - since).total_seconds()) // 60)}, by=by, now=now)
    log.info("ticket %s: undelivered communication passed on another way by %s", ticket.id, by.label)
    return ticket


def _audit(session: Session, ticket: Ticket, action: str, details: dict[str, int | str], *, by: Principal, now: dt.datetime) -> None:
    # Ids, codes and counts only: no text of the communication or of what the officer wrote.
    record(session, by=by, action=action, target_type="ticket", target_id=ticket.id, controller_id=ticket.controller_id, details=details, now=now)
