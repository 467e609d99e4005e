"""A new request with its forward and history lines in one statement (Postgres; issue 11 item 7).

`app.dsr.requests.create_dsr` records a request as an ORM flush (the request and
its forward, the encryption listener locking the platform key) and another (its
history lines). On Postgres `insert_request` writes the same rows with the same
values in one statement of data-modifying WITHs: the fields encrypted exactly as
a flush encrypts them (`app.crypto.fields.encrypt_new_row`: the platform's active
key locked FOR SHARE, associated data naming table, column and row, the blind
index), the reference filled by the database trigger of migration 0026 (as when
the ORM inserts the row), the history lines in their order. The platform key is
the one this process kept (`app.crypto.kept_active`): the statement itself selects
its row FOR SHARE and writes nothing unless it is still the active one, unchanged
(then the row is made again under the key `active_key` locks), so no key query of
its own. The rows returned are in the session, loaded, as after a flush.
Elsewhere (SQLite) it returns None and the caller takes the ordinary path.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Boolean, Integer, Select, bindparam, cast, event, exists, insert, null, select, union_all
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from app.crypto.fields import encrypt_new_row, new_row_uid, remember_plain
from app.crypto.kept_active import active_check, gated_insert, write_checked
from app.crypto.keys import PLATFORM
from app.db import loaded, table_of_model
from app.dsr.gate import ACKNOWLEDGEMENT
from app.dsr.models import Dsr, DsrEvent, DsrForward, StandingInstruction

# The forward's controller's standing acknowledgement instruction as the request's statement read it (`standing_read`).
STANDING_READ = "dsr.standing_read"


def insert_request(
    session: Session,
    fields: Mapping[str, Any],
    plain: Mapping[str, Any],
    *,
    forward_to: int | None,
    events: Sequence[tuple[str, Mapping[str, Any]]],
    by_label: str,
    now: dt.datetime,
) -> Dsr | None:
    """The request of `fields` (its plain columns) and `plain` (its encrypted fields by name; None: no value), with a
    pending forward to `forward_to` when given and its history lines `events` ((code, details), in order), written in
    one statement; the request, in the session and loaded with its forwards, or None when this path does not apply."""
    if session.get_bind().dialect.name != "postgresql" or not events:
        return None
    session.flush()  # whatever is pending is written before the request, as the flush of the ordinary path would
    forward: dict[str, Any] = {"state": "pending", "forwarded_at": None, "message_id_bidx": None, "outbox_ids": [], "created_at": now}
    params: dict[str, Any] = {}
    if forward_to is not None:
        params.update({f"f_{k}": v for k, v in forward.items()}, f_controller_id=forward_to)
    for n, (code, details) in enumerate(events):
        params.update({f"e{n}_at": now, f"e{n}_code": code, f"e{n}_by_label": by_label, f"e{n}_details": dict(details)})

    def rows() -> tuple[dict[str, Any], dict[str, Any]]:
        row_uid = new_row_uid()
        columns = {**_defaults(), **fields, "row_uid": row_uid, **encrypt_new_row(session, Dsr, dict(plain), owner=None, row_uid=row_uid)}
        return columns, {**params, **{f"d_{k}": v for k, v in columns.items()}}

    # Under the platform key as this process kept it, checked and locked FOR SHARE by the statement itself
    # (app.crypto.kept_active: no key query of its own); when the check finds it no longer active and unchanged,
    # nothing was written: the row is made again under the key `active_key` locks, as the flush would.
    found, values = write_checked(session, PLATFORM, rows, lambda checked: _statement(forward_to is not None, len(events), checked))
    dsr_id, reference, forward_id, standing = found
    dsr = loaded(session, Dsr, id=dsr_id, reference=reference, **values)
    remember_plain(dsr, dict(plain))
    forwards: list[DsrForward] = []
    if forward_to is not None:
        made = loaded(session, DsrForward, id=forward_id, dsr_id=dsr_id, controller_id=forward_to, **forward)
        set_committed_value(made, "dsr", dsr)
        forwards.append(made)
        session.info.setdefault(STANDING_READ, {})[(dsr_id, forward_to)] = bool(standing)
    set_committed_value(dsr, "forwards", forwards)
    return dsr


def standing_read(session: Session, dsr_id: int, controller_id: int) -> bool | None:
    """Whether the controller had an active standing acknowledgement instruction, as the statement that wrote the request
    `dsr_id` and its forward to that controller read it in this transaction (once: the value is dropped); None: not read."""
    known: dict[tuple[int, int], bool] = session.info.get(STANDING_READ) or {}
    return known.pop((dsr_id, controller_id), None)


@event.listens_for(Session, "after_transaction_end")
def _forget_standing(session: Session, _transaction: SessionTransaction) -> None:
    # Read in one transaction, valid in it only (a savepoint's end drops it too: the caller then asks, as before).
    session.info.pop(STANDING_READ, None)


@functools.cache
def _defaults() -> dict[str, Any]:
    # What a flush writes for a column the request does not set: its scalar default, else NULL.
    table = table_of_model(Dsr)
    found: dict[str, Any] = {}
    for column in table.columns:
        if column.name in ("id", "reference"):
            continue
        default = column.default
        found[column.name] = default.arg if isinstance(default, ScalarElementColumnDefault) else None
    return found


def _plain_columns() -> list[str]:
    return [c.name for c in table_of_model(Dsr).columns if c.name not in ("id", "reference")]


@functools.cache
def _statement(with_forward: bool, events: int, checked: bool) -> Select[Any]:
    # Built once per shape (its values are parameters): the request (its reference from the trigger), [its forward,]
    # its history lines in order. Each WITH runs whether or not read. `checked`: the request (so all that hangs on it)
    # is written only while the WITH key_ok finds the kept key active (app.crypto.kept_active), no row else.
    dsrs, forwards, lines = table_of_model(Dsr), table_of_model(DsrForward), table_of_model(DsrEvent)
    values = {c: bindparam(f"d_{c}", type_=dsrs.c[c].type) for c in _plain_columns()}
    new_dsr_cte = gated_insert(dsrs, values, active_check().cte("key_ok") if checked else None).returning(dsrs.c.id, dsrs.c.reference).cte("new_dsr")
    line_columns = ("at", "code", "by_label", "details")
    # A UNION ALL of one SELECT a line, in their order (its values cast: a UNION does not take the columns' types; a
    # multi-row VALUES would be, but SQLAlchemy does not cache such a statement: compiled anew, ~7 ms CPU each time).
    typed = [[cast(bindparam(f"e{n}_{c}", type_=lines.c[c].type), lines.c[c].type) for c in line_columns] for n in range(events)]
    rows = [select(new_dsr_cte.c.id, *values) for values in typed]
    new_lines = insert(lines).from_select(["dsr_id", *line_columns], union_all(*rows) if len(rows) > 1 else rows[0])
    ctes = [new_lines.returning(lines.c.id).cte("new_lines")]
    forward_id: Any = null().cast(Integer)
    standing: Any = null().cast(Boolean)
    if with_forward:
        forward_columns = [c.name for c in forwards.columns if c.name not in ("id", "dsr_id")]
        row = select(new_dsr_cte.c.id, *[bindparam(f"f_{c}", type_=forwards.c[c].type) for c in forward_columns])
        new_forward = insert(forwards).from_select(["dsr_id", *forward_columns], row).returning(forwards.c.id).cte("new_forward")
        forward_id = select(new_forward.c.id).scalar_subquery()
        # What `acknowledge` asks next (app.dsr.requests): the controller's active standing acknowledgement instruction.
        rules = table_of_model(StandingInstruction)
        of_controller = rules.c.controller_id == bindparam("f_controller_id", type_=rules.c.controller_id.type)
        standing = exists(select(rules.c.id).where(of_controller, rules.c.kind == ACKNOWLEDGEMENT, rules.c.revoked_at.is_(None)))
    return select(new_dsr_cte.c.id, new_dsr_cte.c.reference, forward_id, standing).add_cte(*ctes)
