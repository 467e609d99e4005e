"""Crypto-shredding of audit events' personal parts, a month at a time; the events and their chain stay.

A month's personal parts are shredded by destroying its period key (app.crypto.periods); no audit
row is touched (the database refuses that anyway), so `audit verify` passes before and after.
A month is shreddable once all of it is past the cutoff: its end (the first instant of the next
month, UTC) at or before `cutoff`. Which months must stay although due (a legal hold on a
controller whose events they hold) is the caller's decision (`keep`): retention asks the
deletion engine's hold check (app.retention.audit_parts).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.audit.service import record
from app.crypto.periods import AUDIT, period_bounds, period_keys, shred_period_keys
from app.principal import Principal


@dataclass(frozen=True)
class DuePeriod:
    """A month whose personal parts may be shredded: its key, how many events have a part, and whose they are.

    `parts` maps a controller id (None: events of no controller) to how many of its events have a part in
    the month: what a legal hold on a controller is checked against.
    """

    period: str
    key_id: int
    start: dt.datetime
    end: dt.datetime
    events: int
    parts: Mapping[int | None, int] = field(default_factory=dict)

    @property
    def controllers(self) -> list[int]:
        """The controllers with parts in this month, ascending."""
        return sorted(c for c in self.parts if c is not None)


def _parts(session: Session, start: dt.datetime, end: dt.datetime) -> dict[int | None, int]:
    stmt = (
        select(AuditEvent.controller_id, func.count())
        .where(AuditEvent.occurred_at >= start, AuditEvent.occurred_at < end, AuditEvent.personal_ct.is_not(None))
        .group_by(AuditEvent.controller_id)
    )
    return {controller_id: int(n) for controller_id, n in session.execute(stmt)}


def due_periods(
    session: Session, cutoff: dt.datetime | None, *, after_key: int = 0, ids: Sequence[int] | None = None, limit: int | None = None
) -> list[DuePeriod]:
    """Months with a live key whose whole span ends at or before `cutoff` (None: any age), in key id order.

    `after_key`: only keys with a higher id (a cursor); `ids`: only these keys; `limit`: at most that many months.
    """
    stmt = select(period_keys.c.id, period_keys.c.period).where(period_keys.c.purpose == AUDIT, period_keys.c.state == "active")
    stmt = stmt.where(period_keys.c.id.in_(list(ids) or [0])) if ids is not None else stmt.where(period_keys.c.id > after_key)
    due: list[DuePeriod] = []
    for key_id, period in session.connection().execute(stmt.order_by(period_keys.c.id)):
        if limit is not None and len(due) >= limit:
            break
        start, end = period_bounds(period)
        if cutoff is not None and end > cutoff:
            continue
        parts = _parts(session, start, end)
        due.append(DuePeriod(period, int(key_id), start, end, sum(parts.values()), parts))
    return due


@dataclass
class ShredResult:
    """What `shred_periods_before` did: months shredded (with their parts' count) and months kept (with why)."""

    shredded: dict[str, int] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)


def shred_periods(session: Session, periods: list[DuePeriod], *, by: Principal, now: dt.datetime) -> dict[str, int]:
    """Destroy these months' keys (flush); each month actually shredded now is audited. Returns {month: parts}."""
    done = set(shred_period_keys(session, AUDIT, [p.period for p in periods], now=now))
    shredded: dict[str, int] = {}
    for due in periods:
        if due.period not in done:
            continue  # shredded meanwhile by another run: audited there
        shredded[due.period] = due.events
        details = {"events": due.events, "controllers": len(due.controllers)}
        record(session, by=by, action="audit.personal_shredded", target_type="audit_period", target_id=due.period, details=details, now=now)
    return shredded


def shred_periods_before(session: Session, cutoff: dt.datetime, *, keep: Mapping[str, str] | None = None, by: Principal, now: dt.datetime) -> ShredResult:
    """Shred the personal parts of every month that ends at or before `cutoff`, except the months in `keep` (month -> reason).

    Flush only, audited per month (`audit.personal_shredded`, target the month, counts only). Idempotent: a month
    already shredded is not found again. The chain is not touched: `audit verify` passes after as before.
    """
    keep = keep or {}
    result = ShredResult()
    due = due_periods(session, cutoff)
    result.kept = {p.period: keep[p.period] for p in due if p.period in keep}
    result.shredded = shred_periods(session, [p for p in due if p.period not in keep], by=by, now=now)
    return result
