"""The retention page (privacy officers and admins): policies, legal holds, the next run's preview, the ledger, a chart.

Privacy officers place and lift holds; admins change policies (a new version each, within RETENTION_MAX_DAYS).
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.auth import rbac
from app.db import utcnow
from app.errors import back_to
from app.extensions import db
from app.retention import figures, holds, policies, release, runner
from app.retention.models import HOLD_BASES
from app.retention.periods import ACTIONS, CATEGORIES, DEFAULTS
from app.tickets.lookup import find_by_reference
from app.web import current_principal, id_value

bp = Blueprint("retention", __name__, url_prefix="/retention")
ENDED_SHOWN = 10  # lifted or ended holds listed by default (newest first; ?holds=all lists every one)


@bp.get("/")
@rbac.require(rbac.RETENTION_READ)
def index() -> str:
    """Policies with their legal basis, holds with their end dates, the next run's preview, past runs, tickets by age."""
    session, now = db.session, utcnow()
    ages = figures.tickets_by_age(session, now=now)
    largest = max((r.total for r in ages), default=0)
    all_ended = request.args.get("holds") == "all"
    ended, ended_total = holds.ended_holds(session, now=now, limit=None if all_ended else ENDED_SHOWN)
    return render_template(
        "retention/index.html",
        policies=[policies.effective(session, c, None, now=now) for c in CATEGORIES],
        overrides=[p for p in policies.all_effective(session, [*policies.controllers_with_overrides(session)], now=now) if p.source == "controller"],
        defaults=DEFAULTS,
        holds=holds.list_holds(session, now=now),
        ended=ended,
        ended_total=ended_total,
        all_ended=all_ended,
        now=now,
        preview=runner.preview(session, now=now),
        releases=release.due(session, now=now),
        runs=runner.ledger(session, limit=20),
        ages=[(row, figures.segments(row, width=600, largest=largest)) for row in ages],
        labels=figures.LABELS,
        bases=HOLD_BASES,
        actions=ACTIONS,
        categories=CATEGORIES,
        max_days=current_app.config["RETENTION_MAX_DAYS"],
    )


def _int(name: str) -> int | None:
    return id_value(request.form.get(name))


def _controller_id() -> int | None:
    """The form's controller id (None: empty); "no controller N" for a number no controller can have, a refusal for anything else."""
    raw = (request.form.get("controller_id") or "").strip()
    if not raw:
        return None
    value = id_value(raw)
    if value is None:
        raise policies.InvalidPolicy(f"no controller {raw[:24]}" if raw.isascii() and raw.isdigit() else "the controller id must be a whole number")
    return value


@bp.post("/holds")
@rbac.require(rbac.DSR_MANAGE)
@back_to("retention.index")
def add_hold() -> Response:
    """Place a legal hold on a controller, a ticket (by reference) or a subject within a controller."""
    form, now = request.form, utcnow()
    kind = form.get("kind", "")
    until_raw = (form.get("until") or "").strip()
    ticket_id = None
    if kind == "ticket":
        ticket = find_by_reference(db.session, (form.get("ticket") or "").strip(), include_triage=True)
        if ticket is None:
            raise holds.InvalidHold("no ticket with that reference")
        ticket_id = ticket.id
    until = holds.end_of(until_raw) if until_raw else None
    hold = holds.place(
        db.session,
        kind=kind,
        basis=form.get("basis", ""),
        basis_text=form.get("note", ""),
        controller_id=None if kind == "ticket" else _controller_id(),
        ticket_id=ticket_id,
        subject_email=form.get("subject", ""),
        until=until,
        by=current_principal(),
        now=now,
    )
    db.session.commit()
    flash(f"Hold {hold.id} placed.", "success")
    return redirect(url_for("retention.index"), code=303)


@bp.post("/holds/<int:hold_id>/lift")
@rbac.require(rbac.DSR_MANAGE)
@back_to("retention.index")
def lift_hold(hold_id: int) -> Response:
    """Lift a hold: what it kept is due at once."""
    holds.lift(db.session, hold_id, by=current_principal(), now=utcnow())
    db.session.commit()
    flash(f"Hold {hold_id} lifted; what it kept is due at the next run.", "success")
    return redirect(url_for("retention.index"), code=303)


@bp.post("/policies")
@rbac.require(rbac.RETENTION_POLICIES)
@back_to("retention.index")
def change_policy() -> Response:
    """Write the next version of a policy (desk-wide, or a controller's override)."""
    form = request.form
    days = _int("period_days")
    row = policies.change(
        db.session,
        form.get("category", ""),
        controller_id=_controller_id(),
        period_days=days or 0,
        action=form.get("action", ""),
        legal_basis=form.get("legal_basis", ""),
        max_days=int(current_app.config["RETENTION_MAX_DAYS"]),
        by=current_principal(),
        now=utcnow(),
    )
    db.session.commit()
    flash(f"{row.category}: version {row.version} in force.", "success")
    return redirect(url_for("retention.index"), code=303)


@bp.post("/policies/withdraw")
@rbac.require(rbac.RETENTION_POLICIES)
@back_to("retention.index")
def withdraw_policy() -> Response:
    """End a controller's override of a category (a new version marked withdrawn); the desk-wide policy applies again."""
    controller_id = _controller_id()
    if controller_id is None:
        raise policies.InvalidPolicy("name the controller whose override ends")
    category = request.form.get("category", "")
    row = policies.withdraw(db.session, category, controller_id=controller_id, by=current_principal(), now=utcnow())
    db.session.commit()
    flash(f"{row.category}: the override of controller {controller_id} is withdrawn (version {row.version}); the desk-wide policy applies.", "success")
    return redirect(url_for("retention.index"), code=303)
