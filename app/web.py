"""Small helpers every blueprint uses: paging arguments and the acting principal."""

from __future__ import annotations

from flask import Request, g

from app.principal import Principal

MAX_PAGE_SIZE = 200


def page_args(request: Request, default_size: int = 50) -> tuple[int, int]:
    """`page` and `size` from the query string, clamped to sane values."""
    page = request.args.get("page", 1, type=int) or 1
    size = request.args.get("size", default_size, type=int) or default_size
    return max(page, 1), min(max(size, 1), MAX_PAGE_SIZE)


def current_principal() -> Principal:
    """The staff member of this request; the auth layer sets `g.principal`."""
    principal: Principal | None = g.get("principal")
    return principal or Principal.system("web-anonymous")


# (endpoint, label) of the top navigation, in order; blueprints add themselves.
# Entries the current staff member may not open are hidden (app.auth.gate.may_visit).
NAV: list[tuple[str, str]] = [
    ("tickets.index", "Tickets"),
    ("dsr.dashboard", "Requests"),
    ("controllers.index", "Controllers"),
    ("quarantine.index", "Quarantine"),
    ("admin.users", "Staff"),
    ("audit_log.index", "Audit log"),
]
