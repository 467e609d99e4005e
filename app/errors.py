"""Errors mapped once for the web: domain errors (`app.exceptions`) and HTTP errors become pages without stack
traces or personal data.

A view parses its form, calls one service, commits and redirects or renders; it catches nothing. What a
service raises reaches the user here, the transaction rolled back first:

- `NotFound` -> the 404 page (the same page as an id that does not exist: scope is not disclosed);
- `Refused`  -> its message flashed as an error, then 303 back to the form's page;
- `Conflict` -> the 409 page with its message and a link back to the form's page;
- `KeyShredded` (a crypto-shredded controller's data needed for an export, download or send, or new data for it)
  -> the 409 page saying so (pages themselves show such values as a placeholder, app.crypto.shown);
- any other `DeskError` (the desk could not do it: a key, a file) -> the 500 page, logged by type.

Refusals are security events (issue 12 item 11, ASVS 16.3): a 403, a 404 for an id the route
matched (out of scope or absent: the same to the user) and a CSRF failure are logged and
audit-logged as `security.refused` with who (staff id, or anonymous), the endpoint, the method
and a reason code; never the URL, its ids or anything the request carried.

The form's page is the one the view names with `@back_to(endpoint)` (built from the URL arguments of the
request that endpoint takes) or `return_to(url)`; without one, a POST to a URL that also answers GET (a form
that posts to itself) goes back to it, anything else to the home page. Never a URL the request carries
(a Referer, `?next=`): nothing here redirects off the desk, and a GET never redirects to itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import Flask, current_app, flash, g, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

from app import exceptions as desk
from app.audit.models import AuditEvent
from app.audit.service import record
from app.crypto.cipher import DecryptionError, KeyShredded
from app.db import utcnow
from app.extensions import db
from app.web import current_principal

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

MESSAGES = {
    400: ("Bad request", "The request could not be understood. Reload the form and try again."),
    403: ("Forbidden", "You do not have permission to do this."),
    404: ("Not found", "There is nothing here, or you may not see it."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    409: ("Conflict", "This cannot be done now: its state changed. Nothing was changed."),
    413: ("Too large", "What you sent is larger than the desk accepts."),
    422: ("Unprocessable", "The input was refused."),
    429: ("Too many requests", "Slow down and try again in a moment."),
    500: ("Server error", "Something went wrong on our side. Nothing you submitted was changed."),
}


def _render(code: int, message: str | None = None, *, back: str | None = None) -> tuple[str, int]:
    title, default = MESSAGES.get(code, ("Error", "The request failed."))
    if request.accept_mimetypes.best == "application/json":
        return f'{{"error": "{title}"}}', code
    return render_template("errors/error.html", code=code, title=title, message=message or default, back=back), code


def return_to(url: str) -> None:
    """Name the page this request's form is on (a path of the desk, built with `url_for`): a refusal goes back there."""
    g.form_page = url


def back_to(endpoint: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a view whose form lives on `endpoint`'s page: a refusal goes back there.

    The page's URL takes the arguments it needs from the request's own (e.g. `dsr_id` of `/dsr/<dsr_id>/route`).
    """

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            needs = {name for rule in current_app.url_map.iter_rules(endpoint) for name in rule.arguments}
            return_to(url_for(endpoint, **{k: v for k, v in (request.view_args or {}).items() if k in needs}))
            return view(*args, **kwargs)

        return wrapper

    return decorate


def form_page() -> str:
    """Where a refused or conflicting request goes back to (see the module's docstring); always a path of the desk."""
    named: str | None = g.get("form_page")
    if named and not (request.method == "GET" and named == request.path):
        return named
    rule = request.url_rule
    if request.method == "POST" and rule is not None and "GET" in (rule.methods or ()):
        return request.path
    return url_for("main.index")


REFUSED = "security.refused"


def note_refusal(status: int, reason: str) -> None:
    """Log and audit-log this request's refusal (its own committed transaction; the request's is rolled back)."""
    db.session.rollback()  # a refused request keeps nothing, and on SQLite its open transaction would block ours
    endpoint = request.endpoint or "none"
    by = current_principal()
    log.warning("refused %s %s %s: %s by %s", status, request.method, endpoint, reason, by.label)
    details = {"status": status, "reason": reason, "endpoint": endpoint[:64], "method": request.method}
    with db.session_scope() as session:
        record(session, by=by, action=REFUSED, target_type="route", target_id=endpoint[:64], details=details, now=utcnow())


def refusal_counts(session: Session, *, since: dt.datetime) -> dict[str, int]:
    """Refusals recorded since `since`, by reason code (forbidden, out_of_scope, restricted, csrf)."""
    counts: dict[str, int] = {}
    events = session.scalars(select(AuditEvent.details_json).where(AuditEvent.action == REFUSED, AuditEvent.occurred_at >= since))
    for details in events:
        reason = str(json.loads(details or "{}").get("reason", "other"))
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def _not_found(_exc: desk.NotFound) -> tuple[str, int]:
    note_refusal(404, "out_of_scope")
    return _render(404)


def _refused(exc: desk.Refused) -> Response:
    db.session.rollback()
    flash(str(exc) or MESSAGES[422][1], "error")
    return redirect(form_page(), code=303)


def _conflict(exc: desk.Conflict) -> tuple[str, int]:
    db.session.rollback()
    return _render(409, str(exc) or None, back=form_page())


def _desk_error(exc: desk.DeskError) -> tuple[str, int]:
    db.session.rollback()
    # The type and route only: a message may name what failed, never who.
    log.error("unhandled %s on %s", type(exc).__name__, request.endpoint)
    return _render(500)


def register_errors(app: Flask) -> None:
    """Every HTTP error gets the desk's page; domain errors are mapped as the module says; a 500 is logged by type only."""

    @app.errorhandler(CSRFError)
    def _csrf(_exc: CSRFError) -> tuple[str, int]:
        note_refusal(400, "csrf")
        return _render(400, "The form expired or was not sent from the desk. Reload it and try again.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[str, int]:
        if exc.code == 403 or (exc.code == 404 and request.endpoint is not None):
            note_refusal(exc.code, "forbidden" if exc.code == 403 else "out_of_scope")
        return _render(exc.code or 500)

    @app.errorhandler(KeyShredded)
    def _shredded(_exc: KeyShredded) -> tuple[str, int]:
        # Pages show a shredded value as a placeholder (app.crypto.shown); what reaches here needs the data itself
        # (an export, a download, a send, a re-encryption) or would write new data for that controller: refused.
        db.session.rollback()
        log.info("refused on %s: a data key was crypto-shredded", request.endpoint)
        return _render(
            409,
            "This cannot be done: it needs data of a controller whose data key was destroyed (crypto-shredded), which can"
            " never be decrypted again, or it would store new data under that controller. Nothing was changed.",
            back=form_page(),
        )

    @app.errorhandler(DecryptionError)
    def _undecryptable(_exc: DecryptionError) -> tuple[str, int]:
        # Crypto-shredded (the controller's data key destroyed) or altered: say so, never show ciphertext.
        db.session.rollback()
        log.error("undecryptable value on %s", request.endpoint)
        return _render(
            500,
            "Personal data on this page cannot be decrypted: its data key was destroyed (crypto-shredding) or the stored value was altered."
            " Nothing was changed; `flask --app wsgi keys status` and the audit log say more.",
        )

    app.register_error_handler(desk.NotFound, _not_found)
    app.register_error_handler(desk.Refused, _refused)
    app.register_error_handler(desk.Conflict, _conflict)
    app.register_error_handler(desk.DeskError, _desk_error)

    @app.errorhandler(InternalServerError)
    def _internal(exc: InternalServerError) -> tuple[str, int]:
        original = getattr(exc, "original_exception", None)
        # The exception type and route only: messages may carry personal data.
        log.error("unhandled %s on %s", type(original).__name__, request.endpoint)
        # A failed flush leaves the session unusable until rolled back, and the page (base.html asks who is signed in)
        # needs it: roll back first, so any 500 renders its page instead of crashing on PendingRollbackError.
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001 - a connection that cannot even roll back must not hide the page
            log.error("rollback failed on %s", request.endpoint)
        return _render(500)
