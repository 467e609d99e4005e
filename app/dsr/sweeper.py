"""The sweeper pass (every minute): forward what is pending, escalate 4 h before the deadline, mark missed deadlines.

The database is the source of truth: the pass finds its work by indexed
queries, claims each step with a conditional UPDATE (so two sweepers, or a
sweeper and a worker, never do a step twice) and flushes; the caller commits.
A request that passes its 24-hour deadline unforwarded has *missed* it: there
is no extension, and a privacy officer records why (record_missed_reason).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import typed_text
from app.dsr import deadlines
from app.dsr.delivery import alert_officers
from app.dsr.errors import InvalidDsr
from app.dsr.forward import FORWARD_DOORBELL, forward
from app.dsr.history import add_event
from app.dsr.models import UNFORWARDED, Dsr, DsrForward
from app.dsr.requests import get_dsr
from app.dsr.settings import DsrSettings
from app.principal import Principal

SWEEP_BATCH = 500
# A pending forward whose doorbell has not been answered by then is forwarded by the sweeper itself.
FORWARD_INLINE_AFTER = dt.timedelta(minutes=5)


@dataclass
class SweepResult:
    """What one sweeper pass did (counts)."""

    rung: int = 0
    forwarded: int = 0
    escalated: int = 0
    missed: int = 0
    failed: list[int] = field(default_factory=list)


def escalate(session: Session, dsr: Dsr, *, settings: DsrSettings, by: Principal, now: dt.datetime) -> bool:
    """Alert privacy officers (email + the UI banner) once, 4 h before an unforwarded request is due."""
    claimed = session.execute(
        update(Dsr)
        .where(Dsr.id == dsr.id, Dsr.escalated_at.is_(None), Dsr.forwarded_at.is_(None))
        .values(escalated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return False
    session.refresh(dsr)
    left = deadlines.format_left(deadlines.time_left(dsr.due_at, now))
    body = (
        f"{dsr.reference} has not been forwarded to its controller and is due at {dsr.due_at:%Y-%m-%d %H:%M} UTC ({left} left).\n"
        f"State: {dsr.state}. Open /dsr/{dsr.id} to route or forward it.\n"
    )
    officers = alert_officers(
        session, dsr, subject=f"Escalation: {dsr.reference} not yet forwarded", body=body, msgid_domain=settings.msgid_domain, by=by, now=now
    )
    add_event(session, dsr, "escalate", by=by, now=now, officers=officers, state=dsr.state)
    return True


def mark_missed(session: Session, dsr: Dsr, *, by: Principal, now: dt.datetime) -> bool:
    """Record that the 24 h forward was missed (no extension exists); a reason must be recorded later."""
    claimed = session.execute(
        update(Dsr)
        .where(Dsr.id == dsr.id, Dsr.missed_at.is_(None), Dsr.forwarded_at.is_(None))
        .values(missed_at=now, missed_reason_missing=True, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return False
    session.refresh(dsr)
    add_event(session, dsr, "missed", by=by, now=now, state=dsr.state)
    return True


def sweep(session: Session, *, settings: DsrSettings, by: Principal, now: dt.datetime, inline_after: dt.timedelta = FORWARD_INLINE_AFTER) -> SweepResult:
    """One pass: forward what is pending (ring, or forward here once the doorbell is overdue), escalate at 4 h, mark missed deadlines."""
    result = SweepResult()
    pending = session.execute(
        select(DsrForward.dsr_id, func.min(DsrForward.created_at)).where(DsrForward.state == "pending").group_by(DsrForward.dsr_id).limit(SWEEP_BATCH)
    ).all()
    ring: list[int] = []
    for dsr_id, created_at in pending:
        created = created_at if created_at.tzinfo else created_at.replace(tzinfo=dt.UTC)
        if now - created < inline_after:
            ring.append(dsr_id)
            continue
        # Overdue doorbell (broker down, worker crashed): forward here, in a savepoint so one failure spoils nothing else.
        try:
            with session.begin_nested():
                result.forwarded += 1 if forward(session, dsr_id, settings=settings, by=by, now=now) else 0
        except InvalidDsr:
            result.failed.append(dsr_id)
    FORWARD_DOORBELL.ring_after_commit(session, ring)
    result.rung = len(ring)
    horizon = now + deadlines.ESCALATE_BEFORE
    for state in UNFORWARDED:
        to_escalate = session.scalars(
            select(Dsr).where(Dsr.state == state, Dsr.due_at <= horizon, Dsr.escalated_at.is_(None)).order_by(Dsr.due_at).limit(SWEEP_BATCH)
        ).all()
        for dsr in to_escalate:
            result.escalated += escalate(session, dsr, settings=settings, by=by, now=now)
        late = session.scalars(select(Dsr).where(Dsr.state == state, Dsr.due_at <= now, Dsr.missed_at.is_(None)).order_by(Dsr.due_at).limit(SWEEP_BATCH)).all()
        for dsr in late:
            result.missed += mark_missed(session, dsr, by=by, now=now)
    session.flush()
    return result


def record_missed_reason(session: Session, dsr_id: int, reason: str, *, by: Principal, now: dt.datetime) -> Dsr:
    """Why a forward was late (required for every missed deadline; kept encrypted, never in the audit log)."""
    dsr = get_dsr(session, dsr_id)
    if dsr.missed_at is None:
        raise InvalidDsr("the request has not missed its deadline")
    text = (reason or "").strip()
    if len(text) < 10 or len(text) > 4000:
        raise InvalidDsr("reason must be 10 to 4000 characters")
    if (found := typed_text.problem(text)) is not None:
        raise InvalidDsr(f"reason: the text {found}")
    dsr.missed_reason = text
    dsr.missed_reason_missing = False
    dsr.updated_at = now
    session.flush()
    add_event(session, dsr, "missed_reason", by=by, now=now)
    return dsr
