"""After an erasure: the subject stays marked, their new mail is flagged, and closing waits until nothing of theirs is left.

An erasure marks the subject at the controller when its run fixes its plan
(`mark`: the blind index of each of their addresses, `ErasedSubject`), so mail
that arrives during or after the run is recognised without keeping any of
their identifiers. Such mail is stored as any mail is (nothing accepted is
lost), flagged `erased_subject` on the message and on the request's history
for the privacy officer (`flag_new_mail`, an intake handler that claims
nothing), and `unhandled` counts what of the subject is left, so closing
refuses to tell the controller "erased" until an erasure run has taken it too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.orm import Session

from app.dsr.history import add_event
from app.dsr.models import Dsr
from app.mail.intake import Inbound
from app.principal import Principal
from app.subject_data.models import ErasedSubject
from app.tickets.models import Message, Ticket

FLAG = "erased_subject"
# True when any subject was ever marked erased: without a mark `flag_new_mail` has nothing to do. Registered as the
# observer's precheck (app.mail.intake): read beside a statement the ingest runs anyway, never a cache of its own.
ANY_MARK = exists(select(ErasedSubject.id))


def mark(session: Session, dsr_id: int, controller_id: int, emails: list[str], *, now: dt.datetime) -> int:
    """Mark the subject as erased at the controller under each of their addresses (idempotent); how many marks are new."""
    added = 0
    for email in emails:
        digest = Ticket.requester_email.index_value(session, email, controller_id=controller_id)
        if digest is None:
            continue
        exists = session.scalar(select(ErasedSubject.id).where(ErasedSubject.controller_id == controller_id, ErasedSubject.email_bidx == digest))
        if exists is None:
            session.add(ErasedSubject(dsr_id=dsr_id, controller_id=controller_id, email_bidx=digest, created_at=now))
            added += 1
    session.flush()
    return added


def flag_new_mail(session: Session, inbound: Inbound, *, by: Principal, now: dt.datetime) -> str | None:
    """Flag mail from an erased subject for the officer (the message, the request's history); claims nothing (None)."""
    message = inbound.message
    marked = _mark_of_sender(session, inbound)
    if marked is None:
        return None
    message.flags = [*(message.flags or []), FLAG]
    dsr = session.get(Dsr, marked.dsr_id) if marked.dsr_id is not None else None
    if dsr is not None:
        add_event(session, dsr, "erased_subject_mail", by=by, now=now, ticket_id=inbound.ticket.id, message_id=message.id)
    session.flush()
    return None


# Built once (building a statement cost about as much CPU as running it; this runs for every stored message).
_MARK_AT = select(ErasedSubject).where(ErasedSubject.controller_id == bindparam("controller_id"), ErasedSubject.email_bidx == bindparam("digest"))
_WITH_MARKS = select(ErasedSubject.controller_id).distinct()


def _mark_of_sender(session: Session, inbound: Inbound) -> ErasedSubject | None:
    """The erasure mark of the message's sender: at the ticket's controller, or for a ticket not yet routed (triage,
    or new mail to the privacy address) at any controller that erased them — one query for the index keys, one for the marks."""
    controller_id = inbound.ticket.controller_id
    if controller_id is not None:
        digest = inbound.message.sender_email_bidx
        if digest is None:
            return None
        return session.scalars(_MARK_AT, {"controller_id": controller_id, "digest": digest}).first()
    sender = inbound.mail.from_email
    if not sender:
        return None
    digests = Ticket.requester_email.index_values_of_controllers(session, sender, _WITH_MARKS)
    if not digests:
        return None
    candidates = session.scalars(select(ErasedSubject).where(ErasedSubject.email_bidx.in_(set(digests.values()))).order_by(ErasedSubject.id))
    return next((mark for mark in candidates if digests.get(mark.controller_id) == mark.email_bidx), None)


def marked(session: Session, dsr_id: int, controller_id: int) -> list[bytes]:
    """The blind index of each address of the subject erased under this request at the controller (an erasure again finds them by it)."""
    stmt = select(ErasedSubject.email_bidx).where(ErasedSubject.dsr_id == dsr_id, ErasedSubject.controller_id == controller_id).order_by(ErasedSubject.id)
    return list(session.scalars(stmt))


def unhandled(session: Session, dsr_id: int, controller_id: int, *, kept: Collection[int] = ()) -> int:
    """Messages still carrying an address of the subject erased under this request (arrived after, or missed), but those `kept` under a hold."""
    digests = select(ErasedSubject.email_bidx).where(ErasedSubject.dsr_id == dsr_id, ErasedSubject.controller_id == controller_id)
    stmt = select(func.count()).select_from(Message).where(Message.key_owner == controller_id, Message.sender_email_bidx.in_(digests))
    if kept:
        stmt = stmt.where(Message.id.not_in(list(kept)))
    return int(session.scalar(stmt) or 0)
