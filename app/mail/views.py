"""The quarantine page: privacy officers see refused mail (reason, size, time; never its content) and release or delete it."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from app.auth import rbac
from app.db import utcnow
from app.errors import back_to
from app.extensions import db
from app.mail import quarantine
from app.mail.inbound import IngestSettings, release_quarantined
from app.tickets.forms import ActionForm
from app.web import current_principal

bp = Blueprint("quarantine", __name__, url_prefix="/quarantine")

# Handling refused mail is a privacy officer's call (issue 5 item 7): the role that holds dsr.manage.
QUARANTINE_PERMISSION = rbac.DSR_MANAGE


@bp.get("/")
@rbac.require(QUARANTINE_PERMISSION)
def index() -> str:
    state = request.args.get("state") or "held"
    if state not in quarantine.STATES:
        abort(400)
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before < 2**31:
        abort(400)
    items = quarantine.list_held(db.session, state=state, before_id=before, limit=50)
    older = url_for("quarantine.index", state=state, before=items[-1].id) if len(items) == 50 else None
    return render_template(
        "quarantine/index.html", items=items, state=state, states=quarantine.STATES, reasons=quarantine.REASONS, form=ActionForm(), older=older
    )


@bp.post("/<int:item_id>/release")
@rbac.require(QUARANTINE_PERMISSION)
@back_to("quarantine.index")
def release(item_id: int) -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    ticket_id = release_quarantined(db.session, item_id, settings=IngestSettings.from_config(current_app.config), by=current_principal(), now=utcnow())
    db.session.commit()
    flash(f"Message {item_id} released as ticket #{ticket_id}.", "success")
    return redirect(url_for("quarantine.index"), code=303)


@bp.post("/<int:item_id>/delete")
@rbac.require(QUARANTINE_PERMISSION)
@back_to("quarantine.index")
def delete(item_id: int) -> Response:
    if not ActionForm().validate_on_submit():
        abort(400)
    quarantine.delete(db.session, item_id, by=current_principal(), now=utcnow())
    db.session.commit()
    flash(f"Message {item_id} deleted; its original is destroyed.", "success")
    return redirect(url_for("quarantine.index"), code=303)
