"""The auditor's audit-log page: filters and pages over the chain, ids and codes only."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from app.audit import service as audit
from app.auth import rbac
from app.extensions import db
from app.web import id_value, page_args

bp = Blueprint("audit_log", __name__, url_prefix="/audit")


def _date(name: str) -> dt.datetime | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        return None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _int(name: str) -> int | None:
    return id_value(request.args.get(name))


@bp.get("/")
@rbac.require(rbac.AUDIT_READ)
def index() -> ResponseReturnValue:
    _page, size = page_args(request, default_size=50)
    since = _date("since")
    until = _date("until")
    where = audit.EventFilter(
        action=(request.args.get("action") or "").strip() or None,
        target_type=(request.args.get("target_type") or "").strip() or None,
        target_id=(request.args.get("target_id") or "").strip() or None,
        controller_id=_int("controller_id"),
        since=since,
        # The form names a last day; the service's bound is exclusive.
        until=until + dt.timedelta(days=1) if until else None,
    )
    page = audit.search_events(db.session, where, before=_int("before"), limit=size, controller_scope=rbac.controller_scope())
    filters = {k: v for k, v in request.args.items() if k not in ("before", "page", "size") and v}
    return render_template("admin/audit.html", page=page, actions=audit.list_actions(db.session), filters=filters, size=size)
