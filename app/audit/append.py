"""Writing linked events into audit_events and handing them back loaded: one INSERT, no ORM flush.

The rows come from app.audit.service (linked there under the chain lock); this module only writes them and builds
the instances. On Postgres through psycopg the INSERT is sent as SQL text built once per row count, the values as
parameters (psycopg prepares it on the server after a few uses); elsewhere it is a Core INSERT built once. Either
is one statement for all the events; building a SQLAlchemy statement, or flushing ORM objects, cost more CPU
than sending it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session, make_transient_to_detached

from app.audit.models import AuditEvent
from app.compiled_once import last_rows
from app.db import bare_instance, table_of_model

# Every stored column but id, in the INSERT's order.
COLUMNS = (
    "seq",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "controller_id",
    "details_json",
    "prev_hash",
    "hash",
    "personal_ct",
)


# Rows a statement: Postgres takes at most 65,535 parameters in one (13 a row: 5,041 rows); a longer list is sent in
# pages of this many, each page's statement built once (so the cache holds at most this many texts).
PAGE_ROWS = 1000


@functools.lru_cache(maxsize=64)
def _insert_sql(count: int) -> str:
    row = "(" + ", ".join(["%s"] * len(COLUMNS)) + ")"
    return f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES {', '.join([row] * count)} RETURNING id, seq"


@functools.cache
def _core_insert() -> Any:
    table = table_of_model(AuditEvent)
    return insert(table).returning(table.c.id, sort_by_parameter_order=True)


def insert_rows(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """INSERT the rows (each a mapping of every column in COLUMNS), one statement a PAGE_ROWS; their ids, in the rows' order."""
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        ids: dict[int, int] = {}
        for start in range(0, len(rows), PAGE_ROWS):
            page = rows[start : start + PAGE_ROWS]
            params = tuple(row[name] for row in page for name in COLUMNS)
            # RETURNING of a multi-row VALUES promises no order: the ids are matched by seq (unique).
            ids.update({seq: event_id for event_id, seq in last_rows(conn, _insert_sql(len(page)), params)})
        return [ids[row["seq"]] for row in rows]
    return list(conn.execute(_core_insert(), list(rows)).scalars())


def loaded_events(session: Session, rows: Sequence[Mapping[str, Any]], ids: Sequence[int], events: Sequence[AuditEvent] | None = None) -> list[AuditEvent]:
    """The stored rows as AuditEvent instances in the session, loaded (as a query would return them), nothing to flush.

    `events`: instances handed out before the rows were written (`unwritten`), filled in place; else new ones.
    The values are set as loaded state, not through the attribute events of the constructor (a third of an
    append's CPU): `make_transient_to_detached` then keys each by its id and `session.add` makes it persistent.
    """
    targets = list(events) if events is not None else [bare_instance(AuditEvent) for _ in rows]
    for added, row, event_id in zip(targets, rows, ids, strict=True):
        added.__dict__.update(row, id=event_id)
        make_transient_to_detached(added)
        session.add(added)
    return targets


def unwritten(row: Mapping[str, Any]) -> AuditEvent:
    """A transient instance of an event not written yet: `row`'s columns, None for those the append sets (id, seq,
    prev_hash, hash, personal_ct) until `loaded_events` fills it."""
    event = bare_instance(AuditEvent)
    event.__dict__.update(row)
    event.__dict__.update(dict.fromkeys(("id", "seq", "prev_hash", "hash", "personal_ct")))
    return event
