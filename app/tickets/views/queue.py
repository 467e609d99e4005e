"""The ticket queues (per controller, and triage for unscoped roles) and the search by reference or requester email."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from app.auth import rbac
from app.controllers import service as controllers
from app.crypto.shown import placeholders
from app.db import utcnow
from app.extensions import db
from app.subject_data.restrict import restricted_flag
from app.tickets import lookup
from app.tickets import queue as ticket_queue
from app.tickets.forms import SearchForm
from app.tickets.models import STATUSES, Ticket
from app.tickets.views.common import bp, scope
from app.web import MAX_ID

AGES = {"1": "older than 1 day", "7": "older than 7 days", "30": "older than 30 days"}
_CURSOR = re.compile(r"^(\d{1,20})_(\d{1,19})$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


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


@bp.get("/")
@rbac.require(rbac.TICKETS_WORK)
def index() -> str:
    mine = scope()
    return render_template(
        "tickets/index.html",
        controllers=controllers.controller_names(db.session, only_ids=mine),
        triage=mine is None,
        search=SearchForm(),
    )


@bp.get("/queue/<int:controller_id>")
@rbac.require(rbac.TICKETS_WORK)
def queue(controller_id: int) -> str:
    # An unknown controller is a 404 like any unknown object, and so is one outside the scope (ControllerNotFound).
    # Held while the page renders, the loaded controller names it at no further cost (the identity map is weak).
    controller = controllers.get_controller(db.session, controller_id, only_ids=scope())
    return _queue_page(controller.id)


@bp.get("/triage")
@rbac.require(rbac.TICKETS_WORK)
def triage() -> str:
    # Triage tickets belong to no controller yet: only unscoped roles may see them.
    rbac.ensure_controller_visible(None)
    return _queue_page(None)


def _assignee_filter(assignee: str, me: int) -> int | None:
    """The `assignee` argument: "me", a staff id, "none" or "" (anyone); anything else is a 400."""
    if assignee == "me":
        return me
    if assignee.isdigit() and int(assignee) <= MAX_ID:
        return int(assignee)
    if assignee not in ("", "none"):
        abort(400)
    return None


def _queue_page(controller_id: int | None) -> str:
    staff = rbac.current_staff()
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        abort(400)
    assignee = request.args.get("assignee") or ""
    age = request.args.get("age") or ""
    if age and age not in AGES:
        abort(400)
    with placeholders():  # a read for the page: a shredded controller's subjects and addresses show as the placeholder
        page = _queue(controller_id, status, assignee, age, staff.user_id)
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
    ticket_queue.remember_queue_keys(db.session, controller_id)
    return html


def _queue(controller_id: int | None, status: str | None, assignee: str, age: str, me: int) -> ticket_queue.QueuePage:
    return ticket_queue.queue(
        db.session,
        controller_id=controller_id,
        status=status,
        assignee_id=_assignee_filter(assignee, me),
        unassigned=assignee == "none",
        older_than=utcnow() - dt.timedelta(days=int(age)) if age else None,
        after=decode_cursor(request.args.get("after")),
        limit=50,
        # Restricted tickets are masked in the list: the check rides in the queue's own statement.
        restricted=restricted_flag(),
    )


@bp.route("/search", methods=["GET", "POST"])
@rbac.require(rbac.TICKETS_WORK)
def search() -> ResponseReturnValue:
    form = SearchForm()
    results: list[Ticket] | None = None
    if form.validate_on_submit():
        query = (form.q.data or "").strip()
        mine = scope()
        if lookup.parse_reference(query):
            ticket = lookup.find_by_reference(db.session, query, controller_ids=mine, include_triage=mine is None)
            if ticket is not None:
                return redirect(url_for("tickets.show", ticket_id=ticket.id), code=303)
            results = []
        elif "@" in query:
            # The blind index: one indexed query per controller key, no decrypt-everything scan.
            results = lookup.find_by_requester_email(db.session, query, controller_ids=mine, include_triage=mine is None)
        else:
            form.q.errors = ["Enter a ticket reference (T-2026-000123) or a requester's email address."]
    status = 422 if request.method == "POST" and results is None else 200
    return render_template("tickets/search.html", form=form, results=results), status
