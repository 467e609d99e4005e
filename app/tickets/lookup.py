"""Finding tickets: by reference (T-2026-000123), by requester email (blind index), by Message-ID, by reply token.

Reads only. `controller_ids=None` means every controller (an unscoped role); a
set limits the lookup to those controllers, so another controller's ticket is
"not found". Triage tickets (controller NULL) are found only when None or when
`include_triage=True` is passed.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Select, bindparam, or_, select
from sqlalchemy.orm import Session

from app.crypto.message_ids import digests
from app.tickets.models import Message, Ticket, key_owner_for

REFERENCE = re.compile(r"\bT-(\d{4})-(\d{6,})\b")
MAX_PAGE = 200
MAX_NAMED_IDS = 100  # the last ids of References/In-Reply-To `find_by_message_ids` looks a ticket up by


def format_reference(created_at: dt.datetime, ticket_id: int) -> str:
    """T-<year>-<id, at least 6 digits>."""
    return f"T-{created_at.year:04d}-{ticket_id:06d}"


def parse_reference(text: str | None) -> tuple[int, int] | None:
    """The (year, id) of the first ticket reference in `text`, or None."""
    match = REFERENCE.search(text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def scoped(stmt: Select[Any], controller_ids: Collection[int] | None, include_triage: bool = False) -> Select[Any]:
    """`stmt` limited to tickets of `controller_ids` (and triage when asked); unchanged when None (every controller)."""
    if controller_ids is None:
        return stmt
    condition = Ticket.controller_id.in_(list(controller_ids))
    return stmt.where(or_(condition, Ticket.controller_id.is_(None)) if include_triage else condition)


def find_by_reference(session: Session, reference: str, *, controller_ids: Collection[int] | None = None, include_triage: bool = False) -> Ticket | None:
    """The ticket with this reference (T-2026-000123), or None."""
    parsed = parse_reference(reference)
    if parsed is None:
        return None
    year, ticket_id = parsed
    stmt = select(Ticket).where(Ticket.reference == format_reference(dt.datetime(year, 1, 1, tzinfo=dt.UTC), ticket_id))
    return session.scalar(scoped(stmt, controller_ids, include_triage))


def find_by_requester_email(
    session: Session, email: str, *, controller_ids: Collection[int] | None = None, include_triage: bool = False, limit: int = MAX_PAGE
) -> list[Ticket]:
    """Every ticket of a requester, newest first, through the per-controller blind index (one query)."""
    if not email or not email.strip():
        return []
    if controller_ids is None:
        from app.controllers.models import Controller

        scope: list[int | None] = [*session.scalars(select(Controller.id)), None]
    else:
        scope = [*controller_ids, *([None] if include_triage else [])]
    conditions = [Ticket.requester_email.matches(session, email, controller_id=key_owner_for(cid)) for cid in scope]
    if not conditions:
        return []
    stmt = select(Ticket).where(or_(*conditions)).order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit)
    return list(session.scalars(stmt))


def find_by_message_ids(session: Session, message_ids: Sequence[str]) -> Ticket | None:
    """The ticket holding any of these Message-IDs (latest first), or None."""
    hashes = digests(session, [m for m in message_ids if m][-MAX_NAMED_IDS:])
    if not hashes:
        return None
    return session.scalar(_by_message_ids(), {"hashes": hashes})


@functools.cache
def _by_message_ids() -> Select[Ticket]:
    # Built once (the hashes an expanding parameter): building the join per reply cost more CPU than running it.
    stmt = select(Ticket).join(Message, Message.ticket_id == Ticket.id).where(Message.message_id_bidx.in_(bindparam("hashes", expanding=True)))
    return stmt.order_by(Message.id.desc()).limit(1)


def find_by_reply_token(session: Session, token: str) -> Ticket | None:
    """The ticket whose reply address carries this token, or None."""
    if not token or len(token) > 32:
        return None
    return session.scalar(select(Ticket).where(Ticket.reply_token == token))


def message_exists(session: Session, message_id: str) -> bool:
    """Whether a message with this Message-ID is stored already."""
    hashes = digests(session, [message_id])
    return bool(hashes) and session.scalar(select(Message.id).where(Message.message_id_bidx.in_(hashes)).limit(1)) is not None
