"""One ticket: its page with the thread, and what staff do on it (note, reply, status, assign, move)."""

from __future__ import annotations

import re

from flask import abort, current_app, render_template, request
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response

from app.addresses import InvalidAddress, normalise_email
from app.auth import rbac
from app.auth.models import User
from app.auth.service import list_users
from app.controllers import service as controllers
from app.db import utcnow
from app.errors import back_to
from app.exceptions import Refused
from app.extensions import db
from app.mail.inbound import IngestSettings
from app.mail.outbox import enqueue_email, msgid_domain_for
from app.subject_data.views import refuse_reply
from app.tickets import service
from app.tickets.forms import AssignForm, AttachmentForm, MoveForm, NoteForm, ReplyForm, StatusForm, submitted
from app.tickets.html import sanitise_html
from app.tickets.models import Message, Ticket
from app.tickets.views.common import attachment_max_bytes, bp, scope, scoped_ticket, ticket_page
from app.web import current_principal

# Message-IDs we put into References: anything else from hostile mail is left out, never sent back.
_SAFE_MSGID = re.compile(r"^[^\s<>]{1,240}$")


def _thread(ticket: Ticket) -> list[Message]:
    # Messages with their attachments in two queries, whatever the thread's length.
    stmt = select(Message).where(Message.ticket_id == ticket.id).options(selectinload(Message.attachments)).order_by(Message.id)
    return list(db.session.scalars(stmt))


def _assignable(ticket: Ticket) -> list[User]:
    """Active staff who may work this ticket: their role works tickets and their scope holds its controller."""
    people = []
    for user in list_users(db.session):
        if not user.is_active or not rbac.role_can(user.role, rbac.TICKETS_WORK):
            continue
        if user.role in rbac.SCOPED_ROLES and ticket.controller_id not in user.controller_ids:
            continue
        people.append(user)
    return people


def _assign_form(ticket: Ticket, people: list[User]) -> AssignForm:
    form = AssignForm()
    form.assignee.choices = [("", "— nobody —"), *[(str(u.id), f"{u.email} ({u.role.replace('_', ' ')})") for u in people]]
    if request.method == "GET":
        form.assignee.data = str(ticket.assignee_id) if ticket.assignee_id else ""
    return form


def _move_form(ticket: Ticket) -> MoveForm | None:
    """The routing form, for unscoped roles only: an agent never sees the controllers outside their scope."""
    if scope() is not None:
        return None
    form = MoveForm()
    form.controller.choices = [(str(c.id), f"{c.name} (#{c.id})") for c in controllers.controller_names(db.session) if c.id != ticket.controller_id]
    return form


def render_body(message: Message) -> dict[str, Markup | str | None]:
    """What the thread shows of a message: the new text, and the full message when it differs.

    HTML mail goes through the allowlist sanitiser (no scripts, no event
    handlers, no remote images); plain text is escaped by the template.
    """
    html = Markup(sanitise_html(message.body_html)) if message.body_html else None  # noqa: S704 - sanitised just now
    text = message.body_text
    new_text = message.reply_text
    if new_text and new_text.strip() != (text or "").strip():
        return {"main_text": new_text, "main_html": None, "full_text": None if html else text, "full_html": html}
    if html is not None:
        return {"main_text": None, "main_html": html, "full_text": None, "full_html": None}
    return {"main_text": text or "", "main_html": None, "full_text": None, "full_html": None}


@bp.get("/<int:ticket_id>")
@rbac.require(rbac.TICKETS_WORK)
def show(ticket_id: int) -> str:
    ticket = scoped_ticket(ticket_id)
    people = _assignable(ticket)
    status_form = StatusForm()
    status_form.status.data = ticket.status
    return render_template(
        "tickets/show.html",
        ticket=ticket,
        thread=_thread(ticket),
        render_body=render_body,
        inline_allowed=service.inline_allowed,
        names={u.id: u.email for u in people},
        reply_form=ReplyForm(),
        note_form=NoteForm(),
        status_form=status_form,
        assign_form=_assign_form(ticket, people),
        attachment_form=AttachmentForm(),
        move_form=_move_form(ticket),
        max_attachment_mib=attachment_max_bytes() / (1024 * 1024),
        me=rbac.current_staff().user_id,
    )


@bp.post("/<int:ticket_id>/note")
@rbac.require(rbac.TICKETS_WORK)
@back_to("tickets.show")
def note(ticket_id: int) -> Response:
    ticket = scoped_ticket(ticket_id)
    form = submitted(NoteForm())
    data = service.MessageInput(direction="note", body_text=form.note.data, author_id=rbac.current_staff().user_id)
    service.add_message(db.session, ticket, data, by=current_principal(), now=utcnow())
    db.session.commit()
    return ticket_page(ticket, "Internal note added.")


def _reply_to(ticket: Ticket) -> str | None:
    """The ticket's own reply address, or None when PRIVACY_ADDRESS cannot carry one (e.g. the embedded *.localhost default)."""
    address = service.reply_address(ticket, IngestSettings.from_config(current_app.config).support_address)
    try:
        normalise_email(address)
    except InvalidAddress:
        # Threading still works through In-Reply-To and the reference in the subject.
        return None
    return address


@bp.post("/<int:ticket_id>/reply")
@rbac.require(rbac.TICKETS_WORK)
@back_to("tickets.show")
def reply(ticket_id: int) -> Response:
    ticket = scoped_ticket(ticket_id)
    form = submitted(ReplyForm())
    if not ticket.requester_email:
        raise Refused("This ticket has no requester address to reply to.")
    if refuse_reply(ticket):
        raise Refused("Not sent: the requester's data is under a restriction or objection until it is lifted.")
    now, by = utcnow(), current_principal()
    thread = _thread(ticket)
    threaded = [m for m in thread if m.message_id and _SAFE_MSGID.match(m.message_id)]
    last_inbound = next((m for m in reversed(threaded) if m.direction == "inbound"), None)
    # The subject carries only the reference (threading) and never the ticket's own subject (personal data).
    subject, body = f"Re: your request [{ticket.reference}]", form.reply.data or ""
    # One transaction: the ticket message and the outbox row exist together or not at all. The outbox's
    # policies may refuse it (an open DSR without a confirmed instruction, WECO §12.2 / Pexgle §11.5).
    outgoing = enqueue_email(
        db.session,
        to=ticket.requester_email,
        subject=subject,
        body_text=body,
        in_reply_to=f"<{last_inbound.message_id}>" if last_inbound else None,
        references=[f"<{m.message_id}>" for m in threaded],
        reply_to=_reply_to(ticket),
        controller_id=ticket.controller_id,
        related_type="ticket",
        related_id=ticket.id,
        kind="reply",
        msgid_domain=msgid_domain_for(current_app.config),
        by=by,
        now=now,
    )
    author = rbac.current_staff().user_id
    data = service.MessageInput(direction="outbound", body_text=body, subject=subject, author_id=author, message_id=(outgoing.message_id or "").strip("<>"))
    service.add_message(db.session, ticket, data, by=by, now=now)
    service.change_status(db.session, ticket.id, form.status_after.data or "waiting", by=by, now=now, controller_ids=scope())
    db.session.commit()
    return ticket_page(ticket, "Reply queued for sending.")


@bp.post("/<int:ticket_id>/status")
@rbac.require(rbac.TICKETS_WORK)
@back_to("tickets.show")
def status(ticket_id: int) -> Response:
    ticket = scoped_ticket(ticket_id)
    form = submitted(StatusForm())
    service.change_status(db.session, ticket.id, form.status.data or "", by=current_principal(), now=utcnow(), controller_ids=scope())
    db.session.commit()
    return ticket_page(ticket, f"Status set to {form.status.data}.")


@bp.post("/<int:ticket_id>/assign")
@rbac.require(rbac.TICKETS_WORK)
@back_to("tickets.show")
def assign(ticket_id: int) -> Response:
    ticket = scoped_ticket(ticket_id)
    form = _assign_form(ticket, _assignable(ticket))
    if not form.validate_on_submit():
        raise Refused("Choose someone who may work this ticket.")
    assignee_id = int(form.assignee.data) if form.assignee.data else None
    service.assign(db.session, ticket.id, assignee_id, by=current_principal(), now=utcnow(), controller_ids=scope())
    db.session.commit()
    return ticket_page(ticket, "Assigned." if assignee_id else "Unassigned.")


@bp.post("/<int:ticket_id>/move")
@rbac.require(rbac.TICKETS_WORK)
@back_to("tickets.show")
def move(ticket_id: int) -> Response:
    ticket = scoped_ticket(ticket_id)
    form = _move_form(ticket)
    if form is None:
        abort(404)  # agents: routing between controllers is not theirs to do (nor to know of)
    if not form.validate_on_submit():
        raise Refused("Choose the controller this ticket belongs to.")
    # Every value of the ticket is re-encrypted under the new controller's key (the service does it).
    service.move_to_controller(db.session, ticket.id, int(form.controller.data or 0), by=current_principal(), now=utcnow())
    db.session.commit()
    return ticket_page(ticket, f"Moved to {controllers.get_controller(db.session, int(form.controller.data or 0)).name}.")
