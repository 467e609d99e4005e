"""Retention category `audit_personal_parts`: crypto-shred the personal parts of a past month's audit events.

An item is one UTC calendar month with a live audit key (app.crypto.periods; the item id is the key's id).
It is due once all of the month is past the period: the first instant of the next month at or before
the cutoff (default 2190 days after; "created" is the event's time). Deleting it destroys the month's
key (app.audit.shredding): every personal part of that month becomes unreadable ("[shredded]" on the
audit page), no audit row changes, and `audit verify` passes as before.

One key covers the events of every controller in its month, so:
- the month belongs to the desk (owner None) and the desk-wide policy applies; a controller's override
  that is longer keeps every month holding parts of that controller's events until the longer period
  is past too (a shorter one cannot shred only that controller's parts, so it changes nothing here);
- a legal hold on a controller keeps every month holding parts of its events: the month item names
  those controllers as its owners, and the engine's one hold check (app.deletion.holds) reports the
  month kept with the hold's reason. Ticket and subject holds do not reach it: a personal part holds
  no data subject's data and no ticket content (app.audit.personal).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.audit.shredding import DuePeriod, due_periods, shred_periods
from app.deletion.categories import Query, RecordCategory
from app.deletion.report import Item
from app.deletion.stores import RunContext
from app.retention.policies import effective

CATEGORY = "audit_personal_parts"
WHAT = "audit_month"


def _desk_only(session: Session) -> list[int | None]:
    return [None]


def _item(due: DuePeriod) -> Item:
    return Item(WHAT, due.key_id, owners=tuple(due.controllers))


def _kept_longer(session: Session, due: DuePeriod, cutoff: dt.datetime, desk_days: int) -> bool:
    """Whether a controller with parts in the month has an override longer than the desk's that is not over yet."""
    for controller_id in due.controllers:
        days = effective(session, CATEGORY, controller_id, now=cutoff).period_days
        if days > desk_days and due.end > cutoff - dt.timedelta(days=days - desk_days):
            return True
    return False


def find_months(session: Session, query: Query) -> list[Item]:
    """Months whose key is still live and whose whole span is at or before the cutoff (or the months of `ids`), in key id order."""
    if query.controller_id is not None:
        return []
    if query.ids is not None:
        return [_item(d) for d in due_periods(session, None, ids=query.ids)]
    months = due_periods(session, query.cutoff, after_key=query.after)
    if query.cutoff is not None and months:
        cutoff = query.cutoff
        desk_days = effective(session, CATEGORY, None, now=cutoff).period_days
        months = [d for d in months if not _kept_longer(session, d, cutoff, desk_days)]
    return [_item(d) for d in months[: query.limit]]


def shred_months(ctx: RunContext, items: Sequence[Item]) -> None:
    """Destroy the keys of these months (each audited as `audit.personal_shredded`); the audit rows stay as they are."""
    months = due_periods(ctx.session, None, ids=[i.id for i in items])
    shredded = shred_periods(ctx.session, months, by=ctx.by, now=ctx.now)
    ctx.report.count("period_keys", "audit_months_shredded", len(shredded))
    ctx.report.count("audit_events", "personal_parts_shredded", sum(shredded.values()))


AUDIT_PERSONAL_PARTS = RecordCategory(CATEGORY, WHAT, "audit month(s)", _desk_only, find_months, {"delete": shred_months})
