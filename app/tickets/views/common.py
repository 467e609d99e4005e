"""What the ticket pages share: the blueprint, the ticket in the staff member's scope, the attachment limit."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from app.auth import rbac
from app.extensions import db
from app.subject_data.views import guard_ticket
from app.tickets import service
from app.tickets.models import Ticket

bp = Blueprint("tickets", __name__, url_prefix="/tickets")

DEFAULT_ATTACHMENT_MAX_BYTES = 25 * 1024 * 1024


def attachment_max_bytes() -> int:
    """The size limit of one attachment (ATTACHMENT_MAX_BYTES, default 25 MiB)."""
    return int(current_app.config.get("ATTACHMENT_MAX_BYTES") or DEFAULT_ATTACHMENT_MAX_BYTES)


def scope() -> frozenset[int] | None:
    """The controllers the staff member works for (None: every controller, and the triage queue too)."""
    return rbac.controller_scope()


def scoped_ticket(ticket_id: int) -> Ticket:
    """The ticket if the staff member may see it (else the service's TicketNotFound: a 404); restricted data passes the guard."""
    mine = scope()
    # Unscoped roles also work the triage queue; agents never see it.
    ticket = service.get_ticket(db.session, ticket_id, controller_ids=mine, include_triage=mine is None)
    # Restricted data (Art. 18/21): privacy officers only, each access audit-logged (app.subject_data).
    guard_ticket(ticket, what=(request.endpoint or "tickets").split(".")[-1])
    return ticket


def ticket_page(ticket: Ticket, done: str) -> Response:
    """After a change (committed): say what was done, back to the ticket."""
    flash(done, "success")
    return redirect(url_for("tickets.show", ticket_id=ticket.id), code=303)
