"""Message-IDs stored as a keyed hash for lookup, encrypted where shown or sent (issue 13 item 1e)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01

A Message-ID often carries the sender's mailbox name. `ticket_messages.message_id`,
`outbox_emails.message_id` / `in_reply_to` / `references` and `dsr_forwards.message_id`
held them in plaintext. Each becomes `message_id_bidx`, the keyed hash of
`app.crypto.message_ids` (HMAC under the platform's blind-index key; unique where the
plaintext was), and where the value is shown or sent an encrypted column under the
row's data key (`message_id_ct`, `in_reply_to_ct`, `references_ct`). Outbox rows also
get `verp_bidx`, the keyed hash of the random part a VERP bounce address names.

Existing rows are hashed and encrypted here, so this needs the keyring: under
`flask --app wsgi db upgrade` the app's, otherwise one built from the environment
(MASTER_SECRET ...), as 0016. A database without such rows needs no key. A message
an erasure already took (`<hex>@erased.invalid`) keeps that hash as its lookup hash,
so a reply quoting its original Message-ID still finds it. Downgrade decrypts the
values back (keyring again); a forward's Message-ID is not restored (only its hash
was kept): replies to it still thread through the forward's note on the ticket.
"""

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.orm import Session

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ERASED = re.compile(r"^([0-9a-f]{32})@erased\.invalid$")
_CHUNK = 500


def _keyring():  # type: ignore[no-untyped-def]
    from flask import current_app, has_app_context

    from app.crypto.keyring import Keyring, get_keyring
    from config.settings import config_from_env

    if has_app_context():
        return get_keyring(current_app)
    return Keyring.from_config(config_from_env())


def _any(conn: sa.Connection, sql: str) -> bool:
    return conn.exec_driver_sql(sql).first() is not None


class _Keys:
    """The platform index key and each owner's active data key, for one migration step."""

    def __init__(self, conn: sa.Connection) -> None:
        from app.crypto.keyring import EXTENSION_KEY
        from app.crypto.keys import cache_for

        self.session = Session(bind=conn, info={EXTENSION_KEY: _keyring()})
        self.conn = self.session.connection()
        self.cache = cache_for(self.session)

    def digest(self, message_id: str) -> bytes:
        from app.crypto.keys import PLATFORM, active_key
        from app.crypto.message_ids import digest_with

        match = _ERASED.match(message_id.strip().strip("<>"))
        if match:  # taken by an erasure: its keyed hash already (the same HMAC)
            return bytes.fromhex(match.group(1))
        return digest_with(active_key(self.conn, self.cache, PLATFORM).index_key, message_id)

    def encrypt(self, table: str, column: str, row: Any, value: str | None) -> bytes | None:
        from app.crypto.cipher import encrypt_field
        from app.crypto.keys import active_key, owner_of

        if value is None:
            return None
        key = active_key(self.conn, self.cache, owner_of(int(row.key_owner)))
        return encrypt_field(key.aead, key.id, value.encode(), table=table, column=column, row_uid=row.row_uid)

    def decrypt(self, table: str, column: str, row: Any, blob: bytes | None) -> str | None:
        from app.crypto.cipher import decrypt_field, key_id_of
        from app.crypto.keys import load_key

        if blob is None:
            return None
        key = load_key(self.conn, self.cache, key_id_of(blob, where=f"{table}.{column}"))
        return decrypt_field(key.aead, blob, table=table, column=column, row_uid=row.row_uid).decode()

    def close(self) -> None:
        self.session.close()


def _rows(conn: sa.Connection, table: str, columns: str, where: str) -> list[Any]:
    return list(conn.execute(sa.text(f"SELECT id, {columns} FROM {table} WHERE {where} ORDER BY id")))  # noqa: S608 (constant names)


def _write(conn: sa.Connection, table: str, values: list[dict[str, Any]]) -> None:
    if not values:
        return
    names = [k for k in values[0] if k != "id"]
    assignments = ", ".join(f'"{n}" = :{n}' for n in names)
    stmt = sa.text(f"UPDATE {table} SET {assignments} WHERE id = :id")  # noqa: S608
    for start in range(0, len(values), _CHUNK):
        conn.execute(stmt, values[start : start + _CHUNK])


def _hash_existing(conn: sa.Connection) -> None:
    if not (
        _any(conn, "SELECT 1 FROM ticket_messages WHERE message_id IS NOT NULL")
        or _any(conn, "SELECT 1 FROM outbox_emails")
        or _any(conn, "SELECT 1 FROM dsr_forwards WHERE message_id IS NOT NULL")
    ):
        return
    from app.mail.dsn import verp_key

    keys = _Keys(conn)
    try:
        rows = _rows(conn, "ticket_messages", "row_uid, key_owner, message_id", "message_id IS NOT NULL")
        _write(
            conn,
            "ticket_messages",
            [
                {"id": r.id, "message_id_bidx": keys.digest(r.message_id), "message_id_ct": keys.encrypt("ticket_messages", "message_id_ct", r, r.message_id)}
                for r in rows
            ],
        )
        rows = _rows(conn, "outbox_emails", 'row_uid, key_owner, message_id, in_reply_to, "references"', "1 = 1")
        _write(
            conn,
            "outbox_emails",
            [
                {
                    "id": r.id,
                    "message_id_bidx": keys.digest(r.message_id),
                    "verp_bidx": keys.digest(verp_key(r.message_id.strip().strip("<>").split(".", 1)[0])),
                    "message_id_ct": keys.encrypt("outbox_emails", "message_id_ct", r, r.message_id),
                    "in_reply_to_ct": keys.encrypt("outbox_emails", "in_reply_to_ct", r, r.in_reply_to),
                    "references_ct": keys.encrypt("outbox_emails", "references_ct", r, r.references),
                }
                for r in rows
            ],
        )
        rows = _rows(conn, "dsr_forwards", "message_id", "message_id IS NOT NULL")
        _write(conn, "dsr_forwards", [{"id": r.id, "message_id_bidx": keys.digest(r.message_id)} for r in rows])
    finally:
        keys.close()


def upgrade() -> None:
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id_bidx", sa.LargeBinary(length=16), nullable=True))
        batch_op.add_column(sa.Column("message_id_ct", sa.LargeBinary(), nullable=True))
        batch_op.create_index(batch_op.f("ix_ticket_messages_message_id_bidx"), ["message_id_bidx"], unique=True)
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id_bidx", sa.LargeBinary(length=16), nullable=True))
        batch_op.add_column(sa.Column("verp_bidx", sa.LargeBinary(length=16), nullable=True))
        batch_op.add_column(sa.Column("message_id_ct", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("in_reply_to_ct", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("references_ct", sa.LargeBinary(), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_emails_message_id_bidx"), ["message_id_bidx"], unique=True)
        batch_op.create_index(batch_op.f("ix_outbox_emails_verp_bidx"), ["verp_bidx"], unique=False)
    with op.batch_alter_table("dsr_forwards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id_bidx", sa.LargeBinary(length=16), nullable=True))
        batch_op.create_index(batch_op.f("ix_dsr_forwards_message_id_bidx"), ["message_id_bidx"], unique=False)

    _hash_existing(op.get_bind())

    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_ticket_messages_message_id"), type_="unique")
        batch_op.drop_column("message_id")
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_outbox_emails_message_id"), type_="unique")
        batch_op.drop_column("message_id")
        batch_op.drop_column("in_reply_to")
        batch_op.drop_column("references")
    with op.batch_alter_table("dsr_forwards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dsr_forwards_message_id"))
        batch_op.drop_column("message_id")


def _decrypt_existing(conn: sa.Connection) -> None:
    if not (_any(conn, "SELECT 1 FROM ticket_messages WHERE message_id_ct IS NOT NULL") or _any(conn, "SELECT 1 FROM outbox_emails")):
        return
    keys = _Keys(conn)
    try:
        rows = _rows(conn, "ticket_messages", "row_uid, key_owner, message_id_ct", "message_id_ct IS NOT NULL")
        _write(conn, "ticket_messages", [{"id": r.id, "message_id": keys.decrypt("ticket_messages", "message_id_ct", r, r.message_id_ct)} for r in rows])
        rows = _rows(conn, "outbox_emails", "row_uid, key_owner, message_id_ct, in_reply_to_ct, references_ct", "1 = 1")
        _write(
            conn,
            "outbox_emails",
            [
                {
                    "id": r.id,
                    "message_id": keys.decrypt("outbox_emails", "message_id_ct", r, r.message_id_ct) or f"<downgraded-{r.id}@message-id.invalid>",
                    "in_reply_to": keys.decrypt("outbox_emails", "in_reply_to_ct", r, r.in_reply_to_ct),
                    "references": keys.decrypt("outbox_emails", "references_ct", r, r.references_ct),
                }
                for r in rows
            ],
        )
    finally:
        keys.close()


def downgrade() -> None:
    with op.batch_alter_table("dsr_forwards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.String(length=250), nullable=True))
        batch_op.create_index(batch_op.f("ix_dsr_forwards_message_id"), ["message_id"], unique=False)
        batch_op.drop_index(batch_op.f("ix_dsr_forwards_message_id_bidx"))
        batch_op.drop_column("message_id_bidx")
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.String(length=250), nullable=True))
        batch_op.add_column(sa.Column("in_reply_to", sa.String(length=998), nullable=True))
        batch_op.add_column(sa.Column("references", sa.Text(), nullable=True))
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.String(length=998), nullable=True))

    _decrypt_existing(op.get_bind())

    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_messages_message_id_bidx"))
        batch_op.drop_column("message_id_ct")
        batch_op.drop_column("message_id_bidx")
        batch_op.create_unique_constraint(batch_op.f("uq_ticket_messages_message_id"), ["message_id"])
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.alter_column("message_id", existing_type=sa.String(length=250), nullable=False)
        batch_op.drop_index(batch_op.f("ix_outbox_emails_verp_bidx"))
        batch_op.drop_index(batch_op.f("ix_outbox_emails_message_id_bidx"))
        batch_op.drop_column("references_ct")
        batch_op.drop_column("in_reply_to_ct")
        batch_op.drop_column("message_id_ct")
        batch_op.drop_column("verp_bidx")
        batch_op.drop_column("message_id_bidx")
        batch_op.create_unique_constraint(batch_op.f("uq_outbox_emails_message_id"), ["message_id"])
