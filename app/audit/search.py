"""The auditor's query: events by action, target, controller and time, newest first, a page at a time (issue 3 item 14).

Re-exported by app.audit.service, where callers find it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.audit.personal import PersonalPart, open_parts

MAX_PAGE = 200


@dataclass(frozen=True)
class EventView:
    """One event as the auditor's page shows it: ids, codes and counts only."""

    seq: int
    occurred_at: dt.datetime
    actor: str
    actor_kind: str
    actor_id: int | None
    action: str
    target_type: str
    target_id: str | None
    controller_id: int | None
    details: dict[str, Any]
    hash: str
    personal: PersonalPart | None = None  # None: the event has no personal part


@dataclass(frozen=True)
class EventFilter:
    """What the auditor filters by; every field optional. `until` is exclusive."""

    action: str | None = None
    target_type: str | None = None
    target_id: int | str | None = None
    controller_id: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


@dataclass(frozen=True)
class EventPage:
    """One page of events, newest first; pass `next_before` back as `before` for the next page."""

    events: list[EventView]
    next_before: int | None


def _view(event: AuditEvent, personal: PersonalPart | None = None) -> EventView:
    if event.actor_kind == "system":
        actor = f"system:{event.actor_name or ''}"
    else:
        actor = f"{event.actor_kind}:{event.actor_id if event.actor_id is not None else '?'}"
    return EventView(
        seq=event.seq,
        occurred_at=event.occurred_at,
        actor=actor,
        actor_kind=event.actor_kind,
        actor_id=event.actor_id,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        controller_id=event.controller_id,
        details=event.details,
        hash=event.hash,
        personal=personal,
    )


def _filtered(query: Select[tuple[AuditEvent]], where: EventFilter, controller_scope: Collection[int] | None) -> Select[tuple[AuditEvent]]:
    if where.action:
        query = query.where(AuditEvent.action == where.action)
    if where.target_type:
        query = query.where(AuditEvent.target_type == where.target_type)
    if where.target_id is not None and where.target_id != "":
        query = query.where(AuditEvent.target_id == str(where.target_id))
    if where.controller_id is not None:
        query = query.where(AuditEvent.controller_id == where.controller_id)
    if where.since is not None:
        query = query.where(AuditEvent.occurred_at >= where.since)
    if where.until is not None:
        query = query.where(AuditEvent.occurred_at < where.until)
    if controller_scope is not None:
        query = query.where(AuditEvent.controller_id.in_(list(controller_scope)))
    return query


def search_events(
    session: Session,
    where: EventFilter | None = None,
    *,
    before: int | None = None,
    limit: int = 50,
    controller_scope: Collection[int] | None = None,
) -> EventPage:
    """Events matching `where`, newest first, `limit` per page (at most 200).

    Keyset pagination on `seq` rather than OFFSET: the log only grows at the head,
    so an offset would shift under the auditor as events arrive and cost a scan
    of every skipped row, while `seq < before` is stable and served by the
    (filter, seq) indexes. `controller_scope`, when given, limits the result to
    events of those controllers (for a scoped role); None means all.
    """
    limit = max(1, min(limit, MAX_PAGE))
    query = _filtered(select(AuditEvent), where or EventFilter(), controller_scope)
    if before is not None:
        query = query.where(AuditEvent.seq < before)
    rows: Sequence[AuditEvent] = list(session.scalars(query.order_by(AuditEvent.seq.desc()).limit(limit + 1)))
    more = len(rows) > limit
    page = list(rows[:limit])
    parts = open_parts(session, ((e.seq, e.personal_ct) for e in page))
    return EventPage(events=[_view(e, parts.get(e.seq)) for e in page], next_before=page[-1].seq if more and page else None)


def list_actions(session: Session) -> list[str]:
    """The distinct action codes in the log, for the filter's choices."""
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
