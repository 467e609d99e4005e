"""The staff queue: a page of a controller's (or triage's) tickets, newest first, in one statement.

Keyset-paginated on (created_at, id) over the indexes of app.tickets.models; the
listed personal columns are decrypted per row with keys this process already
checked (app.crypto.keys remembered keys), so a page needs no key query.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import literal, select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.crypto.keys import adopt_remembered, live_remembered, owner_of, remember_keys, remembered
from app.tickets.lookup import MAX_PAGE
from app.tickets.models import STATUSES, Ticket, key_owner_for
from app.tickets.service import InvalidTicketChange


class QueueRow(NamedTuple):
    """One line of a queue page: the columns a list shows, the personal ones decrypted (None when restricted)."""

    id: int
    reference: str | None
    status: str
    assignee_id: int | None
    created_at: dt.datetime
    subject: str | None
    requester_email: str | None


@dataclass
class QueuePage:
    """One page of a queue; `next_after` is the keyset cursor of the next page (None at the end)."""

    rows: list[QueueRow]
    next_after: tuple[dt.datetime, int] | None
    # Ids of the page's tickets the caller's `restricted` flag marked; None when no flag was asked for.
    restricted: set[int] | None = None


def queue(
    session: Session,
    *,
    controller_id: int | None,
    status: str | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    older_than: dt.datetime | None = None,
    after: tuple[dt.datetime, int] | None = None,
    limit: int = 50,
    restricted: ColumnElement[bool] | None = None,
) -> QueuePage:
    """A page of a controller's queue (controller_id None = triage), newest first, in one query.

    `older_than` filters by age (created before that time); `after` is the keyset
    cursor returned as `next_after` by the previous page. `restricted` is a boolean
    per ticket computed in the same statement (e.g. app.subject_data.restrict.restricted_flag()):
    the ids where it holds come back as `restricted`.
    """
    limit = max(1, min(limit, MAX_PAGE))
    flag = restricted if restricted is not None else literal(False)
    # The data keys this process already unwrapped for the owner ride along as a liveness check
    # (app.crypto.keys: a key shredded elsewhere is never used), so decrypting the page needs no key query.
    owner = owner_of(key_owner_for(controller_id))
    known = remembered(session, owner)
    live = live_remembered(known, owner) if known else literal(None)
    # The listed columns, not entities: a page of 50 skips the identity map and hydration of every column.
    columns = (Ticket.id, Ticket.reference, Ticket.status, Ticket.assignee_id, Ticket.created_at, Ticket.row_uid, Ticket.subject_ct, Ticket.requester_email_ct)
    owned = Ticket.controller_id.is_(None) if controller_id is None else Ticket.controller_id == controller_id
    stmt = select(*columns, flag.label("restricted"), live.label("live")).where(owned)
    if status is not None:
        if status not in STATUSES:
            raise InvalidTicketChange(f"unknown status {status!r}")
        stmt = stmt.where(Ticket.status == status)
    if unassigned:
        stmt = stmt.where(Ticket.assignee_id.is_(None))
    elif assignee_id is not None:
        stmt = stmt.where(Ticket.assignee_id == assignee_id)
    if older_than is not None:
        stmt = stmt.where(Ticket.created_at < older_than)
    if after is not None:
        at, last_id = after
        # A row-value comparison is an index condition (Postgres starts the scan at the
        # cursor); the equivalent OR is only a filter, which made page N cost O(N) rows.
        stmt = stmt.where(tuple_(Ticket.created_at, Ticket.id) < tuple_(at, last_id))
    result = session.execute(stmt.order_by(Ticket.created_at.desc(), Ticket.id.desc()).limit(limit + 1)).all()
    if result:
        adopt_remembered(session, owner, known, result[0].live)
    more = len(result) > limit
    hidden = {row.id for row in result[:limit] if row.restricted} if restricted is not None else None
    subject, email = Ticket.subject, Ticket.requester_email

    def shown(row: Any) -> QueueRow:
        # A restricted ticket's personal data is not even decrypted for the list (it is shown masked).
        masked = hidden is not None and row.id in hidden
        return QueueRow(
            row.id,
            row.reference,
            row.status,
            row.assignee_id,
            row.created_at,
            None if masked or row.subject_ct is None else subject.decrypt(session, row.subject_ct, row_uid=row.row_uid),
            None if masked or row.requester_email_ct is None else email.decrypt(session, row.requester_email_ct, row_uid=row.row_uid),
        )

    rows = [shown(row) for row in result[:limit]]
    return QueuePage(rows=rows, next_after=(rows[-1].created_at, rows[-1].id) if more else None, restricted=hidden)


def remember_queue_keys(session: Session, controller_id: int | None) -> None:
    """After a queue page was shown: keep its owner's unwrapped keys for this process's next pages (checked before each use)."""
    remember_keys(session, owner_of(key_owner_for(controller_id)))
