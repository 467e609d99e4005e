"""Stored tickets by age per controller, measured against each controller's own policies (the retention page's chart).

Per controller, counted as a run would act (the same conditions as `app.retention.categories`): open tickets;
closed tickets a run would not touch now (within both periods, or already anonymised); closed tickets whose
requester identity a run would anonymise; closed tickets whose content a run would delete (overdue); and, apart,
closed tickets a run would act on but an active legal hold keeps (controller, ticket or subject hold by the
requester's blind index). One grouped query per controller; ids and counts only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, case, false, func, or_, select
from sqlalchemy.orm import Session

from app.retention.models import RetentionHold
from app.retention.periods import cutoff
from app.retention.policies import Effective, effective
from app.retention.runner import controllers_with_tickets
from app.tickets.models import Ticket

BUCKETS = ("open", "within", "held", "identity_due", "content_due")
LABELS = {
    "open": "open",
    "within": "closed, nothing due now",
    "held": "due but under a legal hold",
    "identity_due": "identity past its period",
    "content_due": "content past its period",
}


@dataclass(frozen=True)
class AgeRow:
    """One controller's stored tickets by bucket (None: triage)."""

    controller_id: int | None
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Every stored ticket of the controller."""
        return sum(self.counts.values())


def _acts_on(policy: Effective, now: dt.datetime) -> ColumnElement[bool]:
    """A closed ticket a run of this policy would act on now (anonymising skips tickets already without identity)."""
    past = Ticket.closed_at <= cutoff(now, policy.period_days)
    if policy.action == "anonymise":
        return past & (Ticket.requester_email_ct.is_not(None) | Ticket.requester_name_ct.is_not(None))
    return past


def _held(session: Session, cid: int | None, now: dt.datetime) -> ColumnElement[bool]:
    """A ticket of this controller (None: triage) that an active legal hold covers, as the engine's hold check matches it."""
    owner = RetentionHold.controller_id.is_(None) if cid is None else RetentionHold.controller_id == cid
    active = select(RetentionHold).where(owner, RetentionHold.lifted_at.is_(None), or_(RetentionHold.until.is_(None), RetentionHold.until > now))
    found = list(session.scalars(active))
    if any(h.kind == "controller" for h in found):
        return Ticket.id.is_not(None)
    tickets = [h.ticket_id for h in found if h.kind == "ticket" and h.ticket_id is not None]
    subjects = [h.subject_email_bidx for h in found if h.kind == "subject" and h.subject_email_bidx is not None]
    conditions = [*([Ticket.id.in_(tickets)] if tickets else []), *([Ticket.requester_email_bidx.in_(subjects)] if subjects else [])]
    return or_(false(), *conditions)


def tickets_by_age(session: Session, *, now: dt.datetime) -> list[AgeRow]:
    """Each controller's stored tickets in the buckets of BUCKETS (each ticket in exactly one)."""
    rows = []
    for cid in controllers_with_tickets(session, None):
        content = _acts_on(effective(session, "closed_ticket_content", cid, now=now), now)
        identity = _acts_on(effective(session, "requester_identity", cid, now=now), now)
        bucket = case(
            (Ticket.status != "closed", "open"),
            ((content | identity) & _held(session, cid, now), "held"),
            (content, "content_due"),
            (identity, "identity_due"),
            else_="within",
        )
        owner = Ticket.controller_id.is_(None) if cid is None else Ticket.controller_id == cid
        counts = dict.fromkeys(BUCKETS, 0)
        for name, n in session.execute(select(bucket, func.count()).where(owner).group_by(bucket)):
            counts[str(name)] = int(n)
        rows.append(AgeRow(cid, counts))
    return rows


@dataclass(frozen=True)
class Segment:
    """One bucket's bar segment in SVG units."""

    bucket: str
    x: float
    width: float
    count: int


def segments(row: AgeRow, *, width: float, largest: int) -> list[Segment]:
    """The stacked bar of one controller, scaled so the largest controller fills `width`."""
    out, x = [], 0.0
    for name in BUCKETS:
        w = width * row.counts[name] / largest if largest else 0.0
        out.append(Segment(name, round(x, 1), round(w, 1), row.counts[name]))
        x += w
    return out
