"""How a retention run reaches each category's items: one `Dispatch` per covered category, used generically by the runner.

Two kinds:
- whole tickets (`closed_ticket_content`, `requester_identity`): due closed tickets of a controller (None:
  triage), handed to the engine as a tickets scope;
- records (every other category): the store a domain registered on the engine (`app.deletion.categories`:
  quarantined mail, outbox payloads, staff sessions and login addresses by the engine itself through
  `app.retention.setup`; DSR records and export files by `app.subject_data.setup`), handed to the engine as a
  records scope. A new category needs one `RecordCategory` registered under its name and `covered=True` in
  `app.retention.periods`; nothing here changes.

An owner None is the desk: triage for tickets, "no controller" for records (staff data, quarantined mail).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.deletion import service as deletion
from app.deletion.categories import RECORD_STORES, Query, RecordCategory
from app.deletion.report import Item
from app.retention.periods import cutoff
from app.retention.policies import Effective
from app.tickets.models import Ticket

TICKET_CATEGORIES = ("closed_ticket_content", "requester_identity")


@dataclass(frozen=True)
class Dispatch:
    """A category as the runner sees it: who has items, the next due items after a cursor, the engine scope for a batch."""

    category: str
    what: str
    unit: str
    desk_label: str
    scope_kind: str
    owners: Callable[[Session, int | None], list[int | None]]
    # (session, policy, now, after, limit, holds): `holds` False when the items only need their ids (no hold check).
    due: Callable[[Session, Effective, dt.datetime, int, int, bool], list[Item]]
    scope: Callable[[list[Item], int | None], deletion.Scope]


def controllers_with_tickets(session: Session, only: int | None) -> list[int | None]:
    """The controllers (None: triage) that have tickets, or just `only`."""
    if only is not None:
        return [only]
    found = set(session.scalars(select(Ticket.controller_id).distinct()))
    return sorted((c for c in found if c is not None), key=int) + ([None] if None in found else [])


def _due_tickets(session: Session, policy: Effective, now: dt.datetime, after: int, limit: int, holds: bool = True) -> list[Item]:
    """The next due tickets of a (category, controller) in id order."""
    owner = Ticket.controller_id.is_(None) if policy.controller_id is None else Ticket.controller_id == policy.controller_id
    stmt = (
        select(Ticket.id, Ticket.controller_id)
        .where(owner, Ticket.status == "closed", Ticket.closed_at <= cutoff(now, policy.period_days), Ticket.id > after)
        .order_by(Ticket.id)
        .limit(limit)
    )
    if policy.action == "anonymise":
        stmt = stmt.where(Ticket.requester_email_ct.is_not(None) | Ticket.requester_name_ct.is_not(None))
    return [Item("ticket", r.id, controller_id=r.controller_id, ticket_id=r.id) for r in session.execute(stmt)]


def _tickets(category: str) -> Dispatch:
    return Dispatch(
        category,
        "ticket",
        "ticket(s)",
        "triage",
        "tickets",
        controllers_with_tickets,
        _due_tickets,
        lambda items, cid: deletion.Scope.tickets(tuple(i.id for i in items), controller_id=cid),
    )


def _records(store: RecordCategory) -> Dispatch:
    def owners(session: Session, only: int | None) -> list[int | None]:
        found = store.owners(session)
        return found if only is None else [only] if only in found else []

    def due(session: Session, policy: Effective, now: dt.datetime, after: int, limit: int, holds: bool = True) -> list[Item]:
        query = Query(policy.action, controller_id=policy.controller_id, cutoff=cutoff(now, policy.period_days), after=after, limit=limit, holds=holds)
        return store.find(session, query)

    return Dispatch(
        store.name,
        store.what,
        store.unit,
        "desk",
        "records",
        owners,
        due,
        lambda items, cid: deletion.Scope.records(store.name, tuple(i.id for i in items), controller_id=cid),
    )


def dispatch(category: str) -> Dispatch | None:
    """How a run reaches a category's items (None: no store for it in this process)."""
    if category in TICKET_CATEGORIES:
        return _tickets(category)
    store = RECORD_STORES.get(category)
    return _records(store) if store is not None else None
