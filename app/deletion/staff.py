"""Retention's staff categories: ended staff sessions, and the client addresses staff logged in from.

Staff data belongs to no controller: its items are the desk's (controller None), so no controller's or subject's
legal hold covers them (a ticket hold cannot either: they name no ticket).

- `ended_sessions` (counts from the end): a session ends when it is revoked (logout, a password or role change,
  an expiry noticed at the next request) or, never revoked, when it expired: `SESSION_IDLE_SECONDS` after it was
  last seen or `SESSION_ABSOLUTE_SECONDS` after it began, whichever is first. Delete: the row goes.
- `staff_login_ips` (counts from the login, the session's start): the client address kept on a session (the
  only place the desk stores one; failed attempts are audited with ids and counts, no address). Anonymise: the
  address is cleared, not truncated to a network (nothing on the desk needs a network later). The login
  throttle recognises addresses a user logged in from within the last 90 days (`app.auth.login`), so a policy
  shorter than that makes it recognise fewer. No user agent is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, delete, or_, select, update
from sqlalchemy.orm import Session

from app.auth.models import StaffSession
from app.auth.sessions import Lifetimes
from app.deletion.categories import Query, RecordCategory
from app.deletion.report import Item
from app.deletion.stores import RunContext


def _desk_only(session: Session) -> list[int | None]:
    return [None]


def _page(stmt: Select[Any], query: Query) -> Select[Any]:
    stmt = stmt.where(StaffSession.id > query.after).order_by(StaffSession.id).limit(query.limit)
    if query.ids is not None:
        stmt = stmt.where(StaffSession.id.in_(list(query.ids) or [0]))
    return stmt


def ended_sessions(lifetimes: Lifetimes) -> RecordCategory:
    """The category of sessions that ended at or before the cutoff, under these session lifetimes."""

    def find(session: Session, query: Query) -> list[Item]:
        if query.controller_id is not None:
            return []
        s = StaffSession
        stmt = _page(select(s.id), query)
        if query.cutoff is not None:
            c = query.cutoff
            # Ended at or before c: revoked by then, or idle past its lifetime, or past its absolute lifetime.
            stmt = stmt.where(or_(s.revoked_at <= c, s.last_seen_at <= c - lifetimes.idle, s.created_at <= c - lifetimes.absolute))
        return [Item("session", i) for i in session.scalars(stmt)]

    def remove(ctx: RunContext, items: Sequence[Item]) -> None:
        ids = [i.id for i in items]
        ctx.session.execute(delete(StaffSession).where(StaffSession.id.in_(ids)), execution_options={"synchronize_session": False})
        ctx.report.count("staff_sessions", "sessions_deleted", len(ids))

    return RecordCategory("ended_sessions", "session", "ended session(s)", _desk_only, find, {"delete": remove})


def _find_addresses(session: Session, query: Query) -> list[Item]:
    if query.controller_id is not None:
        return []
    s = StaffSession
    stmt = _page(select(s.id).where(s.ip_address_ct.is_not(None)), query)
    if query.cutoff is not None:
        stmt = stmt.where(s.created_at <= query.cutoff)
    return [Item("login", i) for i in session.scalars(stmt)]


def _clear_addresses(ctx: RunContext, items: Sequence[Item]) -> None:
    ids = [i.id for i in items]
    ctx.session.execute(update(StaffSession).where(StaffSession.id.in_(ids)).values(ip_address_ct=None), execution_options={"synchronize_session": False})
    ctx.session.expire_all()  # the bulk update bypassed the identity map
    ctx.report.count("staff_sessions", "addresses_cleared", len(ids))


STAFF_LOGIN_IPS = RecordCategory("staff_login_ips", "login", "login address(es)", _desk_only, _find_addresses, {"anonymise": _clear_addresses})
