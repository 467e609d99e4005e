"""DSR pages: the privacy officers' dashboard, one request with its history and instructions, and their forms."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, or_, select

from app.auth import rbac
from app.controllers.models import Controller
from app.db import utcnow
from app.dsr import chart as dsr_chart
from app.dsr import communication_delivery, deadlines
from app.dsr import dashboard as dsr_dashboard
from app.dsr import instructions as dsr_instructions
from app.dsr.errors import InvalidDsr
from app.dsr.gate import response_body
from app.dsr.models import DECISIONS, TYPES, UNFORWARDED, Dsr, DsrSuggestion
from app.dsr.requests import DsrInput, assign_controllers, create_from_ticket, dismiss_suggestion, get_dsr
from app.dsr.settings import DsrSettings
from app.dsr.sweeper import record_missed_reason
from app.errors import back_to, return_to
from app.exceptions import Refused
from app.extensions import db
from app.mail.outbox import enqueue_email
from app.tickets import service as tickets
from app.tickets.models import Ticket
from app.web import MAX_ID, current_principal, id_value

bp = Blueprint("dsr", __name__, url_prefix="/dsr")
# The escalation banner links at most this many tickets of undelivered communications by their reference.
BANNER_TICKETS = 5


def _now() -> Any:
    return utcnow()


def _guard(ticket: Any, *, what: str) -> None:
    # The restriction guard (Art. 18/21) belongs to app.subject_data, which imports this package:
    # it is registered on the app (app.subject_data.setup) rather than imported (no package cycle).
    current_app.extensions["desk.ticket_guard"](ticket, what=what)


def _settings() -> DsrSettings:
    return DsrSettings.from_config(current_app.config)


@bp.app_context_processor
def _banner() -> dict[str, Any]:
    def dsr_alerts() -> int:
        # The escalation banner: privacy officers see how many requests are within 4 h of (or past) their deadline unforwarded.
        staff: rbac.StaffContext | None = g.get("staff")
        if staff is None or not staff.can(rbac.DSR_MANAGE):
            return 0
        horizon = _now() + deadlines.ESCALATE_BEFORE
        # An escalated request counts at once, whatever its time left (a forward that bounced or was refused, issue 11 item 4).
        at_risk = or_(Dsr.due_at <= horizon, Dsr.escalated_at.is_not(None))
        count = db.session.scalar(select(func.count()).select_from(Dsr).where(Dsr.state.in_(UNFORWARDED), at_risk))
        return int(count or 0)

    def communication_alerts() -> tuple[int, list[tuple[int, str]]]:
        # Communications whose forward did not reach the controller (Pexgle §11.2, issue 11 item 4): how many, and the
        # first few tickets (id, reference) to link to. A partial index holds only these tickets (migration 0029).
        staff: rbac.StaffContext | None = g.get("staff")
        if staff is None or not staff.can(rbac.DSR_MANAGE):
            return 0, []
        undelivered = Ticket.communication_undelivered_at.is_not(None)
        first = select(Ticket.id, Ticket.reference).where(undelivered).order_by(Ticket.id).limit(BANNER_TICKETS)
        shown = [(ticket_id, reference or f"ticket {ticket_id}") for ticket_id, reference in db.session.execute(first)]
        if len(shown) < BANNER_TICKETS:
            return len(shown), shown
        return int(db.session.scalar(select(func.count()).select_from(Ticket).where(undelivered)) or 0), shown

    return {"dsr_alerts": dsr_alerts, "communication_alerts": communication_alerts}


@bp.get("/")
@rbac.require(rbac.DSR_MANAGE)
def dashboard() -> str:
    now = _now()
    board = dsr_dashboard.dashboard(db.session, now=now)
    names = {cid: name for cid, name in db.session.execute(select(Controller.id, Controller.name))}
    return render_template(
        "dsr/dashboard.html",
        board=board,
        now=now,
        names=names,
        chart=dsr_chart.geometry(board.weeks),
        urgency=deadlines.urgency,
        time_left=lambda d: deadlines.format_left(deadlines.time_left(d.due_at, now)),
    )


@bp.get("/<int:dsr_id>")
@rbac.require(rbac.DSR_MANAGE)
def show(dsr_id: int) -> str:
    dsr = get_dsr(db.session, dsr_id)
    if dsr.ticket_id is not None:  # the request shows its subject: a restricted ticket's access is logged like the ticket page's
        _guard(tickets.get_ticket(db.session, dsr.ticket_id), what="dsr")
    now = _now()
    controllers = list(db.session.scalars(select(Controller).where(Controller.status == "active").order_by(Controller.name)))
    names = {c.id: c.name for c in db.session.scalars(select(Controller))}
    standing = {cid: dsr_instructions.active_standing(db.session, cid) for cid in dsr.controller_ids}
    return render_template(
        "dsr/show.html",
        dsr=dsr,
        now=now,
        names=names,
        controllers=controllers,
        standing=standing,
        decisions=DECISIONS,
        urgency=deadlines.urgency(dsr.due_at, now, forwarded=dsr.forwarded_at is not None),
        left=deadlines.format_left(deadlines.time_left(dsr.due_at, now)),
    )


@bp.route("/new/<int:ticket_id>", methods=["GET", "POST"])
@rbac.require(rbac.TICKETS_WORK)
def create(ticket_id: int) -> ResponseReturnValue:
    """Staff mark a ticket as a DSR ("this is a DSR"), with its types and the subject."""
    ticket = tickets.get_ticket(db.session, ticket_id, controller_ids=rbac.controller_scope())
    # The form shows the requester's name and address: the same restriction check as the ticket page (issue 12 item 10).
    _guard(ticket, what="dsr_new")
    suggestion = db.session.scalar(select(DsrSuggestion).where(DsrSuggestion.ticket_id == ticket.id))
    if request.method == "POST":
        data = DsrInput(
            types=request.form.getlist("types"),
            subject_email=request.form.get("subject_email", ""),
            subject_name=request.form.get("subject_name", ""),
            subject_identifiers=request.form.get("subject_identifiers", ""),
            request_text=request.form.get("request_text", ""),
        )
        try:
            dsr = create_from_ticket(db.session, ticket.id, data, by=current_principal(), now=_now())
        except InvalidDsr as exc:
            db.session.rollback()
            flash(str(exc), "error")
        else:
            db.session.commit()
            flash(f"{dsr.reference} recorded; due {dsr.due_at:%Y-%m-%d %H:%M} UTC.", "success")
            if rbac.current_staff().can(rbac.DSR_MANAGE):
                return redirect(url_for("dsr.show", dsr_id=dsr.id))
            return redirect(url_for("tickets.show", ticket_id=ticket.id))
        return render_template("dsr/new.html", ticket=ticket, types=TYPES, suggestion=suggestion, form=request.form), 422
    return render_template("dsr/new.html", ticket=ticket, types=TYPES, suggestion=suggestion, form={})


def _page(dsr_id: int) -> ResponseReturnValue:
    return redirect(url_for("dsr.show", dsr_id=dsr_id))


@bp.post("/<int:dsr_id>/route")
@rbac.require(rbac.DSR_MANAGE)
@back_to("dsr.show")
def route(dsr_id: int) -> ResponseReturnValue:
    ids = [i for i in map(id_value, request.form.getlist("controller_id")) if i is not None]
    assign_controllers(db.session, dsr_id, ids, by=current_principal(), now=_now())
    db.session.commit()
    flash("Controller recorded; the forward is on its way.", "success")
    return _page(dsr_id)


@bp.post("/<int:dsr_id>/missed-reason")
@rbac.require(rbac.DSR_MANAGE)
@back_to("dsr.show")
def missed_reason(dsr_id: int) -> ResponseReturnValue:
    record_missed_reason(db.session, dsr_id, request.form.get("reason", ""), by=current_principal(), now=_now())
    db.session.commit()
    flash("Reason recorded.", "success")
    return _page(dsr_id)


@bp.post("/<int:dsr_id>/instructions/<int:instruction_id>/confirm")
@rbac.require(rbac.DSR_MANAGE)
@back_to("dsr.show")
def confirm(dsr_id: int, instruction_id: int) -> ResponseReturnValue:
    decision, response_text = request.form.get("decision", ""), request.form.get("response_text")
    dsr_instructions.confirm(db.session, dsr_id, instruction_id, decision, response_text=response_text, by=current_principal(), now=_now())
    db.session.commit()
    flash("Instruction confirmed.", "success")
    return _page(dsr_id)


@bp.post("/<int:dsr_id>/instructions/<int:instruction_id>/flag")
@rbac.require(rbac.DSR_MANAGE)
@back_to("dsr.show")
def flag(dsr_id: int, instruction_id: int) -> ResponseReturnValue:
    reason = request.form.get("reason", "")
    dsr_instructions.flag(db.session, dsr_id, instruction_id, reason, settings=_settings(), by=current_principal(), now=_now())
    db.session.commit()
    flash("Instruction flagged; the controller has been told why.", "success")
    return _page(dsr_id)


@bp.post("/<int:dsr_id>/reply")
@rbac.require(rbac.DSR_MANAGE)
@back_to("dsr.show")
def reply(dsr_id: int) -> ResponseReturnValue:
    """Send the subject what the controller instructed; the outbox's policies (the instruction gate) decide, not this page."""
    dsr = get_dsr(db.session, dsr_id)
    if not dsr.subject_email:
        raise Refused("The request has no subject email address.")
    settings = _settings()
    chosen = request.form.get("instruction_id", "")
    instruction = next((i for i in dsr.instructions if str(i.id) == chosen and i.decision == "respond" and i.response_text), None)
    # With an instruction chosen, its text is the body; without one, whatever was posted goes to the gate, which refuses and records it.
    body = response_body(instruction.response_text or "") if instruction is not None else request.form.get("body_text", "")
    enqueue_email(
        db.session,
        to=dsr.subject_email,
        subject=f"Your request {dsr.reference}",
        # The controller's own words between the fixed greeting and signature (issue 12 item 3); the gate checks it again.
        body_text=body,
        reply_to=settings.reply_to,
        related_type="ticket" if dsr.ticket_id else "dsr",
        related_id=dsr.ticket_id or dsr.id,
        kind="reply",
        msgid_domain=settings.msgid_domain,
        by=current_principal(),
        now=_now(),
    )
    db.session.commit()
    flash("Reply queued.", "success")
    return _page(dsr_id)


@bp.post("/standing/<int:controller_id>")
@rbac.require(rbac.DSR_MANAGE)
def standing(controller_id: int) -> ResponseReturnValue:
    """Record (or revoke, with an empty template) a controller's standing acknowledgement instruction."""
    back = request.form.get("dsr_id", "")
    page = url_for("dsr.show", dsr_id=int(back)) if back.isdigit() and int(back) <= MAX_ID else url_for("dsr.dashboard")
    return_to(page)
    source = request.form.get("source_instruction_id", "")
    if request.form.get("revoke"):
        dsr_instructions.revoke_standing(db.session, controller_id, by=current_principal(), now=_now())
    elif source.isdigit() and int(source) <= MAX_ID:
        dsr_instructions.record_standing(db.session, controller_id, source_instruction_id=int(source), by=current_principal(), now=_now())
    else:
        raise Refused("Choose the controller's reply that gives the standing instruction.")
    db.session.commit()
    flash("Standing instruction revoked." if request.form.get("revoke") else "Standing instruction recorded.", "success")
    return redirect(page)


@bp.post("/communications/<int:ticket_id>/passed-on")
@rbac.require(rbac.DSR_MANAGE)
@back_to("tickets.show")
def passed_on(ticket_id: int) -> ResponseReturnValue:
    """A privacy officer records how a communication that did not reach the controller was passed on (Pexgle §11.2)."""
    communication_delivery.passed_on(
        db.session, ticket_id, request.form.get("what", ""), controller_ids=rbac.controller_scope(), by=current_principal(), now=_now()
    )
    db.session.commit()
    flash("Recorded how the communication was passed on; the escalation is cleared.", "success")
    return redirect(url_for("tickets.show", ticket_id=ticket_id))


@bp.post("/suggestions/<int:suggestion_id>/dismiss")
@rbac.require(rbac.DSR_MANAGE)
def dismiss(suggestion_id: int) -> ResponseReturnValue:
    dismiss_suggestion(db.session, suggestion_id, by=current_principal(), now=_now())
    db.session.commit()
    return redirect(url_for("dsr.dashboard"))
