"""record_all of more events than one Postgres statement can carry (app.audit.append pages its INSERT).

The raw-SQL INSERT sends 13 parameters a row; Postgres takes at most 65,535 in one statement (5,041 events), so a
longer list is sent in pages (found by review: unpaged, psycopg refused it with "number of parameters must be
between 0 and 65535", where the Core INSERT it replaced had been paged by SQLAlchemy).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.audit.service import Entry, record_all
from app.principal import Principal

NOW = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)


def test_record_all_of_more_events_than_one_statement_carries_appends_them_all(session: Session) -> None:
    # Given more events than 65535 parameters hold at 13 a row
    entries = [Entry("test.bulk", "ticket", i) for i in range(5100)]
    before = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    # When they are recorded in one call
    events = record_all(session, entries, by=Principal.system("tests"), now=NOW)
    # Then every one is appended, in order
    assert len(events) == 5100 and [e.target_id for e in events[:3]] == ["0", "1", "2"]
    assert session.scalar(select(func.count()).select_from(AuditEvent)) == before + 5100
    # and linked: each event's prev_hash is the hash of the one before it, across the pages
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(events, events[1:], strict=False))
