"""app.db.loaded: the row a Core statement just wrote, as an instance a query would have returned.

The ingest path writes its rows with one statement each and hands the instances to the rest of the desk this way
(issue 11 item 7). The instance must read as stored, change only what is changed afterwards, and refuse a name
that is no column (the constructor would).
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from app.blobs.models import Blob
from app.db import loaded, table_of_model

AT = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)


def test_a_loaded_instance_is_persistent_clean_and_only_a_later_change_is_written(session: Session) -> None:
    values = {"key_owner": 0, "size": 3, "sha256": "a" * 64, "chunk_count": 1, "created_at": AT}
    blob_id = session.execute(insert(table_of_model(Blob)).values(**values).returning(table_of_model(Blob).c.id)).scalar_one()
    blob = loaded(session, Blob, id=blob_id, **values)
    assert session.get(Blob, blob_id) is blob and blob not in session.dirty and blob not in session.new
    seen: list[str] = []
    listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: seen.append(a[2]))
    try:
        session.flush()
        assert seen == []  # nothing to write: it is as stored
        blob.size = 4
        session.flush()
    finally:
        event.remove(session.connection(), "before_cursor_execute", listen)
    assert len(seen) == 1 and seen[0].startswith("UPDATE blobs SET size")
    assert session.execute(select(table_of_model(Blob).c.size).where(table_of_model(Blob).c.id == blob_id)).scalar_one() == 4


def test_a_name_that_is_no_column_is_refused(session: Session) -> None:
    with pytest.raises(TypeError, match="no mapped column"):
        loaded(session, Blob, id=1, key_owner=0, sizes=3)
    assert not session.new and not session.identity_map
