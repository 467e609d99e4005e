"""Recompute the blind indexes of email fields whose value has a `+tag` (migration 0016, issue 12 item 4).

Until 0016 an email's blind index was of the lowercased address; since, it is of the mailbox
(`app.addresses.mailbox`: the `+tag` dropped), so `jane+x@example.org` and `jane@example.org`
match. Only values with a `+` in the local part get a different index: every other row keeps
its value, so this reads every email ciphertext once and writes only those rows. Core
statements on the columns the FieldSpec names (not the ORM models of a later schema), batch by id.
"""

from __future__ import annotations

from sqlalchemy import column, inspect, select, table, update
from sqlalchemy.orm import Session

from app.crypto.fields import FIELDS, PLATFORM, FieldSpec

BATCH_ROWS = 500


def _tagged(value: str) -> bool:
    local = value.strip().rpartition("@")[0]
    return "+" in local.lstrip("+")


def _reindex_field(session: Session, spec: FieldSpec) -> int:
    descriptor = getattr(spec.model, spec.name)
    owner_column = None if spec.owner == PLATFORM else spec.owner
    names = ["id", "row_uid", spec.column, spec.blind_index or ""] + ([owner_column] if owner_column else [])
    rows_table = table(spec.table, *(column(n) for n in names))
    changed = 0
    after = 0
    while True:
        batch = session.execute(
            select(*(rows_table.c[n] for n in names))
            .where(rows_table.c.id > after, rows_table.c[spec.column].is_not(None))
            .order_by(rows_table.c.id)
            .limit(BATCH_ROWS)
        ).all()
        if not batch:
            return changed
        for row in batch:
            after = row.id
            value = descriptor.decrypt(session, getattr(row, spec.column), row_uid=row.row_uid)
            if not _tagged(value):
                continue
            owner = getattr(row, owner_column) if owner_column else None
            digest = descriptor.index_value(session, value, controller_id=owner)
            if digest is not None and digest != getattr(row, spec.blind_index or ""):
                session.execute(update(rows_table).where(rows_table.c.id == row.id).values({spec.blind_index: digest}))
                changed += 1


def reindex_mailboxes(session: Session) -> dict[str, int]:
    """Re-index every email field's tagged values under the mailbox normaliser; `table.column` -> rows changed.

    The session needs the keyring (app.crypto.keyring). Fields whose table or column does not exist
    in this database's schema yet are skipped. Idempotent: a second run changes nothing.
    """
    inspector = inspect(session.connection())
    report: dict[str, int] = {}
    for spec in sorted(FIELDS, key=lambda s: (s.table, s.column)):
        if spec.normalise != "email" or not spec.blind_index or not inspector.has_table(spec.table):
            continue
        present = {c["name"] for c in inspector.get_columns(spec.table)}
        needed = {"id", "row_uid", spec.column, spec.blind_index} | ({spec.owner} if spec.owner != PLATFORM else set())
        if not needed <= present:
            continue
        report[f"{spec.table}.{spec.column}"] = _reindex_field(session, spec)
    return report
