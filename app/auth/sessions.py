"""Server-side staff sessions: the cookie holds a random token, the database holds its hash.

Flask's own session is a signed cookie that logout cannot revoke; here the
row is the session, so revoking it (logout, password change, MFA reset, role
change, disabling) ends it at the next request. Services flush; the caller commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload

from app.auth.models import StaffSession, User

TOKEN_BYTES = 32


@dataclass(frozen=True)
class Lifetimes:
    """How long a session lives without activity, and at most."""

    idle: dt.timedelta
    absolute: dt.timedelta


def token_hash(token: str) -> str:
    """What the database stores for a cookie token (a leaked table gives no usable cookie)."""
    return hashlib.sha256(token.encode("ascii", errors="replace")).hexdigest()


def start_session(session: Session, user: User, *, stage: str, now: dt.datetime, ip_address: str | None = None) -> tuple[str, StaffSession]:
    """A new session for `user` at `stage`; returns the cookie token (shown once) and the row."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = StaffSession(token_hash=token_hash(token), user_id=user.id, stage=stage, created_at=now, last_seen_at=now)
    if ip_address:
        row.ip_address = ip_address  # encrypted at flush with the platform key
    session.add(row)
    session.flush()
    return token, row


class Resolved(NamedTuple):
    """What resolve_session found, and whether it wrote (an expiry or a touch): the caller commits only then."""

    row: StaffSession | None
    wrote: bool


def resolve_session(session: Session, token: str | None, *, now: dt.datetime, lifetimes: Lifetimes) -> Resolved:
    """The live session for a cookie token, touched; row None when unknown, revoked, expired or its user is disabled."""
    if not token:
        return Resolved(None, wrote=False)
    # One statement for the gate: the row, its user and the user's controller scope, joined
    # (every request pays for it; lazy loads were three round trips).
    query = select(StaffSession).where(StaffSession.token_hash == token_hash(token)).options(joinedload(StaffSession.user).joinedload(User.controllers))
    row = session.scalars(query).unique().one_or_none()
    if row is None or row.revoked_at is not None:
        return Resolved(None, wrote=False)
    if now - row.last_seen_at > lifetimes.idle or now - row.created_at > lifetimes.absolute:
        row.revoked_at = now
        session.flush()
        return Resolved(None, wrote=True)
    if not row.user.is_active:
        return Resolved(None, wrote=False)
    # Touch at most once a minute: saves a write per request and keeps the idle timeout honest.
    if now - row.last_seen_at >= dt.timedelta(minutes=1):
        row.last_seen_at = now
        session.flush()
        return Resolved(row, wrote=True)
    return Resolved(row, wrote=False)


def revoke_session(session: Session, row: StaffSession, *, now: dt.datetime) -> None:
    """End one session."""
    if row.revoked_at is None:
        row.revoked_at = now
        session.flush()


def revoke_user_sessions(session: Session, user_id: int, *, now: dt.datetime, keep_id: int | None = None) -> int:
    """End every live session of a user (but `keep_id`); returns how many."""
    query = update(StaffSession).where(StaffSession.user_id == user_id, StaffSession.revoked_at.is_(None))
    if keep_id is not None:
        query = query.where(StaffSession.id != keep_id)
    result = session.execute(query.values(revoked_at=now).execution_options(synchronize_session="fetch"))
    session.flush()
    return int(getattr(result, "rowcount", 0) or 0)
