"""Execution pages (privacy officers): act on a request under its confirmed instruction, run reports, downloads.

The actions hang off the DSR page (`templates/subject_data/_panel.html`,
included by `dsr/show.html`); every POST re-checks the instruction in the
service. A download is two steps: a POST issues a 60-second single-use token
onto a page of its own, whose form POSTs it back: the token is never in a
URL (so never in an access log, the history or a Referer).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.wrappers import Response

from app.auth import rbac
from app.controllers.models import Controller
from app.crypto.keyring import get_keyring
from app.db import utcnow
from app.dsr.gate import NoConfirmedInstruction, require_instruction
from app.dsr.models import Dsr
from app.dsr.settings import DsrSettings
from app.errors import back_to, note_refusal
from app.extensions import db
from app.principal import Principal
from app.subject_data import closing, export, handover, restrict, service, tokens
from app.subject_data.erasure import released_from
from app.subject_data.erasure_notice import kept_by_hold, released_by
from app.subject_data.models import DECISION_FOR, SubjectExport, SubjectRun
from app.tickets.models import Ticket
from app.web import current_principal, id_value, streamed_blob

bp = Blueprint("subject_data", __name__, url_prefix="/subject-data")

CONTENT_TYPES = {"json": "application/json", "pdf": "application/pdf"}


def _key() -> bytes:
    return get_keyring(current_app).derive(tokens.KEY_PURPOSE)


def _dsr_page(dsr_id: int, done: str) -> Response:
    flash(done, "success")
    return redirect(url_for("dsr.show", dsr_id=dsr_id), code=303)


def _controller_arg() -> int:
    value = id_value(request.form.get("controller_id"))
    if value is None:
        abort(400)
    return value


# --- the panel on the DSR page ------------------------------------------------------


def panel(dsr: Dsr) -> dict[str, Any]:
    """What the DSR page shows of execution: counts per controller, which actions are authorised, runs (with what legal holds kept), restrictions."""
    session = db.session
    names = {c.id: c.name for c in session.scalars(select(Controller).where(Controller.id.in_(dsr.controller_ids or [0])))}
    rows = []
    for cid in dsr.controller_ids:
        allowed = {}
        for action, decision in DECISION_FOR.items():
            try:
                require_instruction(session, dsr.id, decision, controller_id=cid)
                allowed[action] = True
            except NoConfirmedInstruction:
                allowed[action] = False
        found = service.find_for(session, dsr.id, cid).counts if dsr.subject_email else None
        rows.append({"controller_id": cid, "name": names.get(cid, f"#{cid}"), "found": found, "allowed": allowed})
    runs = list(session.scalars(select(SubjectRun).where(SubjectRun.dsr_id == dsr.id).order_by(SubjectRun.id.desc())))
    now = utcnow()
    kept = {r.id: kept_by_hold(session, r.report["kept"], now=now) for r in runs if (r.report or {}).get("kept")}
    return {"controllers": rows, "runs": runs, "kept": kept, "restrictions": restrict.active_for(session, dsr.id)}


def restricted_ids(tickets: Any) -> set[int]:
    """Which tickets of a list are restricted: lists show them masked, for everyone (opening one is the logged access)."""
    return restrict.restricted_ticket_ids(db.session, [t.id for t in tickets])


@bp.app_context_processor
def _helpers() -> dict[str, Any]:
    return {"subject_data_panel": panel, "restricted_ids": restricted_ids}


# --- restricted tickets (called by the ticket pages) --------------------------------


def guard_ticket(ticket: Ticket, *, what: str = "ticket") -> None:
    """Restricted data: agents get a 403 page; a privacy officer may look, and the access is audit-logged at once."""
    if not restrict.is_restricted(db.session, ticket.id):
        return
    staff = rbac.current_staff()
    if not staff.can(rbac.DSR_MANAGE):
        note_refusal(403, "restricted")
        abort(Response(render_template("subject_data/restricted.html", ticket=ticket), status=403, mimetype="text/html"))
    if g.get("restricted_access_logged") == (ticket.id, what):
        return
    # Committed at once (the guard runs before the view changes anything): the access is on record even if the view then fails.
    restrict.log_access(db.session, ticket.id, ticket.controller_id, what=what, by=current_principal(), now=utcnow())
    db.session.commit()
    g.restricted_access_logged = (ticket.id, what)


def refuse_reply(ticket: Ticket) -> bool:
    """True when a reply from this ticket must be refused (its data is restricted)."""
    return restrict.is_restricted(db.session, ticket.id)


# --- actions --------------------------------------------------------------------


@bp.post("/dsr/<int:dsr_id>/run")
@rbac.require(rbac.DSR_MANAGE)
@back_to("dsr.show")
def start(dsr_id: int) -> ResponseReturnValue:
    """Queue an export, erasure or rectification (the worker does it, batch by batch)."""
    kind, cid = request.form.get("kind", ""), _controller_arg()
    new_name, new_email = request.form.get("new_name"), request.form.get("new_email")
    service.start(db.session, dsr_id, cid, kind, new_name=new_name, new_email=new_email, by=current_principal(), now=utcnow())
    db.session.commit()
    label = {"export": "Export", "erase": "Erasure", "rectify": "Rectification"}.get(kind, "Run")
    return _dsr_page(dsr_id, f"{label} queued; the report appears below when it is done.")


@bp.post("/dsr/<int:dsr_id>/restrict")
@rbac.require(rbac.DSR_MANAGE)
@back_to("dsr.show")
def restrict_data(dsr_id: int) -> ResponseReturnValue:
    cid, kind = _controller_arg(), request.form.get("kind", "restriction")
    restrict.restrict(db.session, dsr_id, cid, kind, by=current_principal(), now=utcnow())
    db.session.commit()
    return _dsr_page(dsr_id, "Recorded: the subject's data is now shown to privacy officers only.")


@bp.post("/dsr/<int:dsr_id>/restrictions/<int:restriction_id>/lift")
@rbac.require(rbac.DSR_MANAGE)
@back_to("dsr.show")
def lift(dsr_id: int, restriction_id: int) -> ResponseReturnValue:
    restrict.lift(db.session, dsr_id, restriction_id, by=current_principal(), now=utcnow())
    db.session.commit()
    return _dsr_page(dsr_id, "Restriction lifted.")


@bp.post("/dsr/<int:dsr_id>/close")
@rbac.require(rbac.DSR_MANAGE)
@back_to("dsr.show")
def close(dsr_id: int) -> ResponseReturnValue:
    settings = DsrSettings.from_config(current_app.config)
    closing.close(db.session, dsr_id, settings=settings, by=current_principal(), now=utcnow())
    db.session.commit()
    return _dsr_page(dsr_id, "Closed; the controller is notified of completion.")


# --- reports and downloads ---------------------------------------------------------------


@bp.get("/runs/<int:run_id>")
@rbac.require(rbac.DSR_MANAGE)
def run(run_id: int) -> str:
    item = service.get_run(db.session, run_id)
    exports = list(db.session.scalars(select(SubjectExport).where(SubjectExport.run_id == item.id).order_by(SubjectExport.id)))
    kept = kept_by_hold(db.session, item.report.get("kept") or [], now=utcnow())
    released = released_from(db.session, item)
    releases = released_by(db.session, item, kept)
    dsr = db.session.get(Dsr, item.dsr_id)
    return render_template("subject_data/run.html", run=item, dsr=dsr, exports=exports, kept=kept, released=released, releases=releases)


@bp.post("/exports/<int:export_id>/token")
@rbac.require(rbac.DSR_MANAGE)
def token(export_id: int) -> ResponseReturnValue:
    """Issue a single-use 60-second token for one download, on a no-referrer, no-store page whose form posts it back."""
    item = export.get_export(db.session, export_id)
    staff = rbac.current_staff()
    value = tokens.issue(db.session, _key(), resource=f"export:{item.id}", user_id=staff.user_id, now=utcnow())
    db.session.commit()
    response = Response(render_template("subject_data/download.html", export=item, token=value, seconds=int(tokens.TTL.total_seconds())), mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.post("/download")
@rbac.require(rbac.DSR_MANAGE)
def download() -> ResponseReturnValue:
    """Serve an export once: the token is verified (HS256 only, every claim) and its jti consumed before a byte is sent."""
    raw = request.form.get("token", "")
    staff = rbac.current_staff()
    try:
        claims = tokens.verify(raw, _key())
        if not claims.resource.startswith("export:") or not claims.resource[7:].isdigit():
            raise tokens.InvalidToken("the download link is not valid")
        item = export.get_export(db.session, int(claims.resource[7:]))
        tokens.consume(db.session, claims, user_id=staff.user_id, resource=claims.resource, now=utcnow())
    except tokens.TokenError as exc:
        db.session.rollback()
        # 400 for a token that is not ours or not valid, 410 for one already used or expired (never 403: the person may download).
        return render_template("subject_data/token_refused.html", reason=str(exc)), 410 if isinstance(exc, tokens.TokenNotUsable) else 400
    export.record_download(db.session, item, by=current_principal(), now=utcnow())
    # Committed before the first byte: a second request with the same token finds the jti used.
    db.session.commit()
    assert item.blob_id is not None
    response = Response(streamed_blob(item.blob_id), content_type=CONTENT_TYPES[item.format])
    response.headers["Content-Length"] = str(item.size)
    dsr = db.session.get(Dsr, item.dsr_id)
    name = f"{dsr.reference if dsr else 'export'}-controller-{item.controller_id}.{item.format}"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# --- the export handed to the controller (issue 13 item 4) ----------------------------------------


@bp.post("/runs/<int:run_id>/send")
@rbac.require(rbac.DSR_MANAGE)
def send(run_id: int) -> ResponseReturnValue:
    """Email the controller's DSR contacts a download link per file (valid 7 days, once each)."""
    item = service.get_run(db.session, run_id)
    sent = handover.send_links(
        db.session,
        item.id,
        link_for=lambda secret: url_for("subject_data.link", secret=secret, _external=True),
        settings=DsrSettings.from_config(current_app.config),
        by=current_principal(),
        now=utcnow(),
    )
    db.session.commit()
    return _dsr_page(item.dsr_id, f"Download links sent to {sent} DSR contact(s) of the controller.")


def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.route("/exports/link/<secret>", methods=["GET", "POST"])
@rbac.public
def link(secret: str) -> ResponseReturnValue:
    """The controller's page: GET shows the file (link untouched: mail scanners follow links); POST spends it and mints the stream token."""
    try:
        if request.method == "GET":
            found, item = handover.open_link(db.session, secret, now=utcnow())
            page = render_template("subject_data/link.html", export=item, link=found, secret=secret)
        else:
            found, item, value = handover.spend(db.session, secret, _key(), now=utcnow())
            db.session.commit()
            page = render_template("subject_data/link_token.html", export=item, token=value, seconds=int(tokens.TTL.total_seconds()))
    except (handover.LinkNotFound, handover.LinkNotUsable) as exc:
        db.session.rollback()
        return render_template("subject_data/token_refused.html", reason=str(exc)), 404 if isinstance(exc, handover.LinkNotFound) else 410
    return _private(Response(page, mimetype="text/html"))


@bp.post("/exports/link-download")
@rbac.public
def link_download() -> ResponseReturnValue:
    """Serve the file once: the stream token is verified and consumed, the download audited, before a byte is sent."""
    try:
        item = handover.download(db.session, request.form.get("token", ""), _key(), by=Principal.system("export link"), now=utcnow())
    except (tokens.TokenError, handover.LinkNotFound) as exc:
        db.session.rollback()
        return render_template("subject_data/token_refused.html", reason=str(exc)), 410 if isinstance(exc, tokens.TokenNotUsable) else 400
    db.session.commit()
    assert item.blob_id is not None
    response = Response(streamed_blob(item.blob_id), content_type=CONTENT_TYPES[item.format])
    response.headers["Content-Length"] = str(item.size)
    dsr = db.session.get(Dsr, item.dsr_id)
    response.headers["Content-Disposition"] = f'attachment; filename="{dsr.reference if dsr else "export"}.{item.format}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return _private(response)
