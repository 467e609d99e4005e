"""A staff member's own sessions: list them, end any (issue 12 item 9, ASVS 5.0 7.5). Services flush; the caller commits."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import StaffSession
from app.auth.service import AuthError, audit_user
from app.auth.sessions import Lifetimes, revoke_session
from app.exceptions import NotFound
from app.principal import Principal


class SessionNotFound(AuthError, NotFound):
    """No live session of this user has that id (another user's is not found either)."""


def live_sessions(session: Session, user_id: int, *, now: dt.datetime, lifetimes: Lifetimes) -> list[StaffSession]:
    """The user's signed-in sessions that have not ended or expired, newest first."""
    rows = session.scalars(
        select(StaffSession)
        .where(StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None), StaffSession.stage == "full")
        .order_by(StaffSession.last_seen_at.desc(), StaffSession.id.desc())
    )
    return [r for r in rows if now - r.last_seen_at <= lifetimes.idle and now - r.created_at <= lifetimes.absolute]


def end_own_session(session: Session, user_id: int, staff_session_id: int, *, now: dt.datetime) -> None:
    """End one of the user's own sessions (SessionNotFound for any other id); audit-logged."""
    row = session.get(StaffSession, staff_session_id)
    if row is None or row.user_id != user_id or row.revoked_at is not None:
        raise SessionNotFound("no such session")
    revoke_session(session, row, now=now)
    audit_user(session, by=Principal.staff(user_id), action="auth.session_ended", user_id=user_id, now=now, details={"session_id": row.id})
