"""Template globals that let pages say names instead of numbers, and link what belongs together.

Staff read "WECO Retail GmbH" and "privacy@desk.example", not "controller #1" and
"staff:3": `controller_name`, `staff_name` and `actor_name` turn the ids the pages
hold into names (looked up once per request, in the request's session). The audit
log keeps its ids and shows the name beside them. `ticket_requests` links a ticket
to the data-subject requests made from it, `forward_of` shows the forward to a
controller as a forward to its named contact with the outbox row's delivery state,
and `open_queues` gives the home page each queue with its open count.

Every page renders as a `PageTemplate`: a value of a controller whose data key was crypto-shredded reads as a
placeholder while the page renders (app.crypto.shown), so such a ticket or request still opens; nothing but pages
is rendered from these templates (emails and exports are built in code and still get the error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, g
from jinja2 import Template
from sqlalchemy import func, select

from app.auth import rbac
from app.auth.models import User
from app.controllers.models import Controller
from app.crypto.shown import placeholders
from app.dsr.models import Dsr, Instruction
from app.extensions import db
from app.mail.models import OutboxEmail
from app.tickets.models import Message, Ticket

# Tickets still to be worked: what the home page counts per queue.
OPEN_STATUSES = ("new", "open", "waiting")
# The outbox row's state as staff read it.
DELIVERY = {
    "queued": "queued for sending",
    "sending": "being sent",
    "sent": "delivered to the mail server",
    "failed": "delivery failed",
    "refused": "refused by the desk's outbound policy",
    "bounced": "bounced: returned by the recipient's mail server",
}


@dataclass(frozen=True)
class QueueCount:
    """One queue of the home page: the controller (None: triage), its name and its open tickets."""

    controller_id: int | None
    name: str
    open: int


@dataclass(frozen=True)
class RequestLink:
    """A data-subject request made from a ticket."""

    id: int
    reference: str
    state: str


@dataclass(frozen=True)
class Forward:
    """The forward of a request to one controller contact, as the ticket's thread shows it."""

    dsr_id: int | None
    dsr_reference: str | None
    controller_name: str
    to: str | None
    state: str
    state_label: str


def _cache(name: str) -> dict[Any, Any]:
    cache: dict[Any, Any] | None = g.get(name)
    if cache is None:
        cache = {}
        setattr(g, name, cache)
    return cache


def controller_name(controller_id: int | None) -> str:
    """The controller's name ("controller 7" when it no longer exists); "triage" for None."""
    if controller_id is None:
        return "triage"
    cache = _cache("_names_controllers")
    if controller_id not in cache:
        # get(): a controller the request already loaded (its own page, the gate) costs no statement.
        controller = db.session.get(Controller, controller_id)
        cache[controller_id] = controller.name if controller is not None else f"controller {controller_id}"
    return str(cache[controller_id])


def staff_name(user_id: int | None) -> str:
    """The staff member's email address ("staff 7" for an account that no longer exists)."""
    if user_id is None:
        return "nobody"
    cache = _cache("_names_staff")
    if user_id not in cache:
        # get(): the signed-in staff member was loaded by the gate, so the page header costs no statement.
        user = db.session.get(User, user_id)
        cache[user_id] = user.email if user is not None else f"staff {user_id}"
    return str(cache[user_id])


def load_staff_names(user_ids: list[int]) -> str:
    """Look up the names of many staff members in one statement (a list's assignees); renders as nothing."""
    cache = _cache("_names_staff")
    missing = {i for i in user_ids if i is not None and i not in cache}
    if missing:
        cache.update({row.id: row.email for row in db.session.execute(select(User.id, User.email).where(User.id.in_(missing)))})
    return ""


def actor_name(label: str | None) -> str:
    """A principal's log label ("staff:4", "system:demo seed") as a person reads it; "" for an unknown shape."""
    kind, _, rest = (label or "").partition(":")
    if kind == "staff" and rest.isdigit():
        return staff_name(int(rest))
    if kind == "system":
        return f"the desk ({rest})" if rest else "the desk"
    if kind == "controller":
        return f"controller {rest}"
    return ""


def instruction_name(instruction_id: int | None) -> str:
    """An instruction as staff know it: whose, when it came, and what it says ("instruction 7" when gone)."""
    if instruction_id is None:
        return "none"
    row = db.session.execute(
        select(Instruction.controller_id, Instruction.received_at, Instruction.state, Instruction.decision).where(Instruction.id == instruction_id)
    ).one_or_none()
    if row is None:
        return f"instruction {instruction_id}"
    what = f"{row.state}: {row.decision.replace('_', ' ')}" if row.decision else row.state
    return f"{controller_name(row.controller_id)}'s instruction of {row.received_at:%Y-%m-%d %H:%M} UTC ({what})"


def ticket_reference(ticket_id: int | None) -> str:
    """The ticket's reference (T-2026-000123), as staff quote it."""
    if ticket_id is None:
        return "none"
    ticket = db.session.get(Ticket, ticket_id)
    return (ticket.reference or f"ticket {ticket_id}") if ticket is not None else f"ticket {ticket_id}"


def ticket_requests(ticket_id: int) -> list[RequestLink]:
    """The data-subject requests recorded from this ticket, oldest first."""
    rows = db.session.execute(select(Dsr.id, Dsr.reference, Dsr.state).where(Dsr.ticket_id == ticket_id).order_by(Dsr.id))
    return [RequestLink(row.id, row.reference or f"request {row.id}", row.state) for row in rows]


def forward_of(message: Message) -> Forward | None:
    """The forward a thread note stands for (its `dsr_forward` note), with the outbox row's delivery state; None otherwise."""
    marker = next((n for n in message.notes or [] if isinstance(n, dict) and n.get("code") == "dsr_forward"), None)
    if marker is None:
        return None
    row = db.session.scalar(select(OutboxEmail).where(OutboxEmail.message_id_bidx == message.message_id_bidx)) if message.message_id_bidx else None
    dsr_id = marker.get("dsr_id")
    reference = db.session.scalar(select(Dsr.reference).where(Dsr.id == dsr_id)) if isinstance(dsr_id, int) else None
    controller_id = marker.get("controller_id")
    state = row.state if row is not None else "unknown"
    return Forward(
        dsr_id=dsr_id if isinstance(dsr_id, int) else None,
        dsr_reference=reference,
        controller_name=controller_name(controller_id if isinstance(controller_id, int) else None),
        to=row.to_addr if row is not None else None,
        state=state,
        state_label=DELIVERY.get(state, "no outbox record"),
    )


@dataclass(frozen=True)
class Delivery:
    """One outbox row as staff read it: to whom, and how far it got."""

    to: str
    state: str
    state_label: str
    answer: str = ""  # the relay's last answer (refusal or acceptance), scrubbed of addresses


def deliveries(outbox_ids: list[int] | None) -> list[Delivery]:
    """The outbox rows of a forward (DsrForward.outbox_ids), in order: the named contact and the delivery state."""
    if not outbox_ids:
        return []
    rows = db.session.scalars(select(OutboxEmail).where(OutboxEmail.id.in_(list(outbox_ids))).order_by(OutboxEmail.id))
    return [Delivery(row.to_addr or "", row.state, DELIVERY.get(row.state, row.state), _delivery_answer(row)) for row in rows]


def _delivery_answer(row: OutboxEmail) -> str:
    if row.state == "failed":
        return row.last_error or ""
    if row.state == "bounced":  # the DSN's status and diagnostic (addresses already removed), issue 11 item 4
        return " ".join(x for x in (row.bounce_status, row.bounce_diagnostic) if x)
    return ""


def open_queues() -> list[QueueCount]:
    """The queues the current staff member works, each with its open tickets (triage first, for unscoped roles)."""
    staff: rbac.StaffContext | None = g.get("staff")
    if staff is None or not staff.can(rbac.TICKETS_WORK):
        return []
    scope = staff.controller_scope
    query = select(Controller.id, Controller.name).order_by(Controller.name, Controller.id)
    if scope is not None:
        query = query.where(Controller.id.in_(list(scope)))
    controllers = list(db.session.execute(query))
    counted = select(Ticket.controller_id, func.count()).where(Ticket.status.in_(OPEN_STATUSES)).group_by(Ticket.controller_id)
    if scope is not None:
        counted = counted.where(Ticket.controller_id.in_(list(scope)))
    counts: dict[int | None, int] = {cid: int(n) for cid, n in db.session.execute(counted)}
    queues = [QueueCount(None, "Triage", counts.get(None, 0))] if scope is None else []
    return queues + [QueueCount(row.id, row.name, counts.get(row.id, 0)) for row in controllers]


class PageTemplate(Template):
    """A page: encrypted values whose key was shredded read as the placeholder while it renders, never as an error."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        """Render with shredded values shown as the placeholder."""
        with placeholders():
            return super().render(*args, **kwargs)


def register(app: Flask) -> None:
    """Make the helpers above globals of every template; every template a `PageTemplate`."""
    app.jinja_env.template_class = PageTemplate
    app.jinja_env.globals.update(
        controller_name=controller_name,
        staff_name=staff_name,
        load_staff_names=load_staff_names,
        actor_name=actor_name,
        instruction_name=instruction_name,
        ticket_reference=ticket_reference,
        ticket_requests=ticket_requests,
        forward_of=forward_of,
        deliveries=deliveries,
        open_queues=open_queues,
    )
