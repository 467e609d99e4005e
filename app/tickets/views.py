"""Staff ticket pages: queues, the ticket with its thread, reply, note, assign, status, attachments, search.

Scope: agents see only the tickets of the controllers assigned to them; any
other ticket (or the triage queue) is a 404, exactly like an id that does not
exist. Every change goes through `app.tickets.service` (which writes the audit
event) and is committed here; nothing changes on GET.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import quote

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
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
from app.dsr.gate import InstructionRequired
from app.extensions import db
from app.mail.inbound import IngestSettings
from app.mail.outbound import InvalidOutboundEmail, enqueue_email, msgid_domain_for
from app.subject_data.restrict import restricted_flag
from app.subject_data.views import guard_ticket, refuse_reply
from app.tickets import service
from app.tickets.forms import AssignForm, AttachmentForm, MoveForm, NoteForm, ReplyForm, SearchForm, StatusForm
from app.tickets.html import sanitise_html
from app.tickets.models import STATUSES, Attachment, Message, Ticket
from app.web import MAX_ID, current_principal, streamed_blob

bp = Blueprint("tickets", __name__, url_prefix="/tickets")

DEFAULT_ATTACHMENT_MAX_BYTES = 25 * 1024 * 1024
AGES = {"1": "older than 1 day", "7": "older than 7 days", "30": "older than 30 days"}
_CURSOR = re.compile(r"^(\d{1,20})_(\d{1,19})$")
# Message-IDs we put into References: anything else from hostile mail is left out, never sent back.
_SAFE_MSGID = re.compile(r"^[^\s<>]{1,240}$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def attachment_max_bytes() -> int:
    """The size limit of one attachment (ATTACHMENT_MAX_BYTES, default 25 MiB)."""
    return int(current_app.config.get("ATTACHMENT_MAX_BYTES") or DEFAULT_ATTACHMENT_MAX_BYTES)


def encode_cursor(after: tuple[dt.datetime, int]) -> str:
    """The keyset cursor as URL text: microseconds since the epoch and the id (no personal data)."""
    at, ticket_id = after
    return f"{(at - _EPOCH) // dt.timedelta(microseconds=1)}_{ticket_id}"


def decode_cursor(text: str | None) -> tuple[dt.datetime, int] | None:
    """The keyset cursor from the URL; a malformed one is a 400, not a silent first page."""
    if not text:
        return None
    match = _CURSOR.match(text)
    if match is None or int(match.group(2)) > MAX_ID:
        abort(400)
    try:
        return _EPOCH + dt.timedelta(microseconds=int(match.group(1))), int(match.group(2))
    except OverflowError:
        abort(400)


def _scope() -> frozenset[int] | None:
    return rbac.controller_scope()


def _ticket_or_404(ticket_id: int) -> Ticket:
    scope = _scope()
    try:
        # Unscoped roles also work the triage queue; agents never see it.
        ticket = service.get_ticket(db.session, ticket_id, controller_ids=scope, include_triage=scope is None)
    except service.TicketNotFound:
        abort(404)
    # Restricted data (Art. 18/21): privacy officers only, each access audit-logged (app.subject_data).
    guard_ticket(ticket, what=(request.endpoint or "tickets").split(".")[-1])
    return ticket


def _done(ticket: Ticket, message: str) -> Response:
    db.session.commit()
    flash(message, "success")
    return redirect(url_for("tickets.show", ticket_id=ticket.id), code=303)


def _refused(ticket: Ticket, message: str) -> Response:
    db.session.rollback()
    flash(message, "error")
    return redirect(url_for("tickets.show", ticket_id=ticket.id), code=303)


def _form_errors(form: Any) -> str:
    return "; ".join(f"{getattr(form, name).label.text}: {', '.join(errors)}" for name, errors in form.errors.items()) or "The form was incomplete."


# --- queues -------------------------------------------------------------------


@bp.get("/")
@rbac.require(rbac.TICKETS_WORK)
def index() -> str:
    scope = _scope()
    return render_template(
        "tickets/index.html",
        controllers=controllers.controller_names(db.session, only_ids=scope),
        triage=scope is None,
        search=SearchForm(),
    )


@bp.get("/queue/<int:controller_id>")
@rbac.require(rbac.TICKETS_WORK)
def queue(controller_id: int) -> str:
    rbac.ensure_controller_visible(controller_id)
    return _queue_page(controller_id)


@bp.get("/triage")
@rbac.require(rbac.TICKETS_WORK)
def triage() -> str:
    # Triage tickets belong to no controller yet: only unscoped roles may see them.
    rbac.ensure_controller_visible(None)
    return _queue_page(None)


def _queue_page(controller_id: int | None) -> str:
    staff = rbac.current_staff()
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        abort(400)
    assignee = request.args.get("assignee") or ""
    assignee_id: int | None = None
    if assignee == "me":
        assignee_id = staff.user_id
    elif assignee.isdigit() and int(assignee) <= MAX_ID:
        assignee_id = int(assignee)
    elif assignee not in ("", "none"):
        abort(400)
    age = request.args.get("age") or ""
    if age and age not in AGES:
        abort(400)
    older_than = utcnow() - dt.timedelta(days=int(age)) if age else None
    page = service.queue(
        db.session,
        controller_id=controller_id,
        status=status,
        assignee_id=assignee_id,
        unassigned=assignee == "none",
        older_than=older_than,
        after=decode_cursor(request.args.get("after")),
        limit=50,
        # Restricted tickets are masked in the list: the check rides in the queue's own statement.
        restricted=restricted_flag(),
    )
    filters = {k: v for k, v in {"status": status, "assignee": assignee, "age": age}.items() if v}
    endpoint = "tickets.triage" if controller_id is None else "tickets.queue"
    route_args: dict[str, Any] = dict(filters) if controller_id is None else {"controller_id": controller_id, **filters}
    html = render_template(
        "tickets/queue.html",
        page=page,
        controller_id=controller_id,
        filters=filters,
        statuses=STATUSES,
        ages=AGES,
        first_url=url_for(endpoint, **route_args),
        next_url=url_for(endpoint, **route_args, after=encode_cursor(page.next_after)) if page.next_after else None,
        paged=bool(request.args.get("after")),
        # One url_for instead of fifty: /tickets/<id> is the prefix plus the id.
        ticket_base=url_for("tickets.index"),
        me=staff.user_id,
    )
    service.remember_queue_keys(db.session, controller_id)
    return html


# --- search -------------------------------------------------------------------


@bp.route("/search", methods=["GET", "POST"])
@rbac.require(rbac.TICKETS_WORK)
def search() -> ResponseReturnValue:
    form = SearchForm()
    results: list[Ticket] | None = None
    if form.validate_on_submit():
        query = (form.q.data or "").strip()
        scope = _scope()
        if service.parse_reference(query):
            ticket = service.find_by_reference(db.session, query, controller_ids=scope, include_triage=scope is None)
            if ticket is not None:
                return redirect(url_for("tickets.show", ticket_id=ticket.id), code=303)
            results = []
        elif "@" in query:
            # The blind index: one indexed query per controller key, no decrypt-everything scan.
            results = service.find_by_requester_email(db.session, query, controller_ids=scope, include_triage=scope is None)
        else:
            form.q.errors = ["Enter a ticket reference (T-2026-000123) or a requester's email address."]
    status = 422 if request.method == "POST" and results is None else 200
    return render_template("tickets/search.html", form=form, results=results), status


# --- one ticket -----------------------------------------------------------------


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


def _move_form(ticket: Ticket) -> MoveForm | None:
    """The routing form, for unscoped roles only: an agent never sees the controllers outside their scope."""
    if _scope() is not None:
        return None
    form = MoveForm()
    form.controller.choices = [(str(c.id), f"{c.name} (#{c.id})") for c in controllers.controller_names(db.session) if c.id != ticket.controller_id]
    return form


@bp.get("/<int:ticket_id>")
@rbac.require(rbac.TICKETS_WORK)
def show(ticket_id: int) -> str:
    ticket = _ticket_or_404(ticket_id)
    people = _assignable(ticket)
    names = {u.id: u.email for u in people}
    status_form = StatusForm()
    status_form.status.data = ticket.status
    return render_template(
        "tickets/show.html",
        ticket=ticket,
        thread=_thread(ticket),
        render_body=render_body,
        inline_allowed=service.inline_allowed,
        names=names,
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
def note(ticket_id: int) -> Response:
    ticket = _ticket_or_404(ticket_id)
    form = NoteForm()
    if not form.validate_on_submit():
        return _refused(ticket, _form_errors(form))
    data = service.MessageInput(direction="note", body_text=form.note.data, author_id=rbac.current_staff().user_id)
    service.add_message(db.session, ticket, data, by=current_principal(), now=utcnow())
    return _done(ticket, "Internal note added.")


def _thread_ids(thread: list[Message]) -> list[str]:
    return [f"<{m.message_id}>" for m in thread if m.message_id and _SAFE_MSGID.match(m.message_id)]


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
def reply(ticket_id: int) -> Response:

    ticket = _ticket_or_404(ticket_id)
    form = ReplyForm()
    if not form.validate_on_submit():
        return _refused(ticket, _form_errors(form))
    if not ticket.requester_email:
        return _refused(ticket, "This ticket has no requester address to reply to.")
    if refuse_reply(ticket):
        return _refused(ticket, "Not sent: the requester's data is under a restriction or objection until it is lifted.")
    now, by, config = utcnow(), current_principal(), current_app.config
    thread = _thread(ticket)
    last_inbound = next((m for m in reversed(thread) if m.direction == "inbound" and m.message_id and _SAFE_MSGID.match(m.message_id)), None)
    # The subject carries only the reference (threading) and never the ticket's own subject (personal data).
    subject = f"Re: your request [{ticket.reference}]"
    body = form.reply.data or ""
    try:
        # One transaction: the ticket message and the outbox row exist together or not at all.
        outgoing = enqueue_email(
            db.session,
            to=ticket.requester_email,
            subject=subject,
            body_text=body,
            in_reply_to=f"<{last_inbound.message_id}>" if last_inbound else None,
            references=_thread_ids(thread),
            reply_to=_reply_to(ticket),
            controller_id=ticket.controller_id,
            related_type="ticket",
            related_id=ticket.id,
            kind="reply",
            msgid_domain=msgid_domain_for(config),
            by=by,
            now=now,
        )
    except InstructionRequired:
        # WECO §12.2 / Pexgle §11.5: the outbox's gate refuses mail to the subject of an open DSR.
        return _refused(ticket, "Not sent: this requester has an open data-subject request, and no confirmed controller instruction authorises this reply.")
    except InvalidOutboundEmail as exc:
        return _refused(ticket, f"The reply was not sent: {exc}")
    data = service.MessageInput(
        direction="outbound",
        body_text=body,
        subject=subject,
        author_id=rbac.current_staff().user_id,
        message_id=outgoing.message_id.strip("<>"),
    )
    service.add_message(db.session, ticket, data, by=by, now=now)
    service.change_status(db.session, ticket.id, form.status_after.data or "waiting", by=by, now=now, controller_ids=_scope())
    return _done(ticket, "Reply queued for sending.")


@bp.post("/<int:ticket_id>/status")
@rbac.require(rbac.TICKETS_WORK)
def status(ticket_id: int) -> Response:
    ticket = _ticket_or_404(ticket_id)
    form = StatusForm()
    if not form.validate_on_submit():
        return _refused(ticket, _form_errors(form))
    service.change_status(db.session, ticket.id, form.status.data or "", by=current_principal(), now=utcnow(), controller_ids=_scope())
    return _done(ticket, f"Status set to {form.status.data}.")


@bp.post("/<int:ticket_id>/assign")
@rbac.require(rbac.TICKETS_WORK)
def assign(ticket_id: int) -> Response:
    ticket = _ticket_or_404(ticket_id)
    form = _assign_form(ticket, _assignable(ticket))
    if not form.validate_on_submit():
        return _refused(ticket, "Choose someone who may work this ticket.")
    assignee_id = int(form.assignee.data) if form.assignee.data else None
    service.assign(db.session, ticket.id, assignee_id, by=current_principal(), now=utcnow(), controller_ids=_scope())
    return _done(ticket, "Assigned." if assignee_id else "Unassigned.")


@bp.post("/<int:ticket_id>/move")
@rbac.require(rbac.TICKETS_WORK)
def move(ticket_id: int) -> Response:
    ticket = _ticket_or_404(ticket_id)
    form = _move_form(ticket)
    if form is None:
        abort(404)  # agents: routing between controllers is not theirs to do (nor to know of)
    if not form.validate_on_submit():
        return _refused(ticket, "Choose the controller this ticket belongs to.")
    # Every value of the ticket is re-encrypted under the new controller's key (the service does it).
    service.move_to_controller(db.session, ticket.id, int(form.controller.data or 0), by=current_principal(), now=utcnow())
    return _done(ticket, f"Moved to controller #{form.controller.data}.")


@bp.post("/<int:ticket_id>/attachments")
@rbac.require(rbac.TICKETS_WORK)
def upload(ticket_id: int) -> Response:
    ticket = _ticket_or_404(ticket_id)
    form = AttachmentForm()
    if not form.validate_on_submit():
        return _refused(ticket, _form_errors(form))
    upload = form.file.data
    now, by = utcnow(), current_principal()
    # The file arrives as an internal note that carries it; the note's text is the optional comment.
    data = service.MessageInput(direction="note", body_text=form.comment.data or "Attachment added.", author_id=rbac.current_staff().user_id)
    message = service.add_message(db.session, ticket, data, by=by, now=now)
    try:
        # Werkzeug spools a large upload to a temporary file; the service reads it a chunk at a time.
        service.add_attachment(
            db.session,
            message,
            filename=(upload.filename or "attachment")[:255],
            content_type=upload.mimetype or "application/octet-stream",
            content=upload.stream,
            by=by,
            now=now,
            max_bytes=attachment_max_bytes(),
        )
    except service.AttachmentTooLarge:
        return _refused(ticket, f"The file is larger than the limit of {attachment_max_bytes() // (1024 * 1024)} MiB; nothing was stored.")
    return _done(ticket, "Attachment added.")


def content_disposition(kind: str, filename: str | None) -> str:
    """`inline`/`attachment` with an ASCII fallback name and the RFC 6266/5987 UTF-8 name (no header injection)."""
    name = (filename or "attachment").replace("\r", " ").replace("\n", " ")
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]", "_", name)[:150] or "attachment"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name[:150], safe='')}"


@bp.get("/<int:ticket_id>/attachments/<int:attachment_id>")
@rbac.require(rbac.TICKETS_WORK)
def download(ticket_id: int, attachment_id: int) -> Response:
    ticket = _ticket_or_404(ticket_id)
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or attachment.message.ticket_id != ticket.id:
        abort(404)
    base_type = attachment.content_type.split(";")[0].strip().lower()
    inline = service.inline_allowed(base_type)
    response = Response(streamed_blob(attachment.blob_id), content_type=base_type if inline else "application/octet-stream")
    response.headers["Content-Length"] = str(attachment.size)
    response.headers["Content-Disposition"] = content_disposition("inline" if inline else "attachment", attachment.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    if base_type != "application/pdf":
        # A file from a stranger is never a page of the desk: no scripts, no same-origin access.
        response.headers["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; sandbox"
    return response
