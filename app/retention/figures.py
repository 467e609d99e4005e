"""Stored tickets by age per controller, measured against each controller's own policies (the retention page's chart).

Per controller: open tickets; closed tickets within both periods; closed tickets whose requester identity is past
its period; closed tickets whose content is past its period (overdue: the next run deletes them unless held).
One grouped query per controller; ids and counts only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.retention.periods import cutoff
from app.retention.policies import effective
from app.retention.runner import controllers_with_tickets
from app.tickets.models import Ticket

BUCKETS = ("open", "within", "identity_due", "content_due")
LABELS = {"open": "open", "within": "closed, within periods", "identity_due": "identity past its period", "content_due": "content past its period"}


@dataclass(frozen=True)
class AgeRow:
    """One controller's stored tickets by bucket (None: triage)."""

    controller_id: int | None
    counts: dict[str, int]

    @property
    def total(self) -> int:
        """Every stored ticket of the controller."""
        return sum(self.counts.values())


def tickets_by_age(session: Session, *, now: dt.datetime) -> list[AgeRow]:
    """Each controller's stored tickets in the buckets of BUCKETS."""
    rows = []
    for cid in controllers_with_tickets(session, None):
        content = cutoff(now, effective(session, "closed_ticket_content", cid, now=now).period_days)
        identity = cutoff(now, effective(session, "requester_identity", cid, now=now).period_days)
        bucket = case(
            (Ticket.status != "closed", "open"),
            (Ticket.closed_at <= content, "content_due"),
            (Ticket.closed_at <= identity, "identity_due"),
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
