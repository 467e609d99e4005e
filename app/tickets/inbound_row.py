"""A message with its raw original and identifier index (and a new ticket) in one statement (Postgres; issue 11 item 7).

`app.tickets.service.add_message` stores a message as three writes: the raw
original (`blobs` + `blob_chunks`, one data-modifying WITH), the message (an
ORM flush) and its identifier index (`message_identifiers`). On Postgres, for
a raw original of one chunk, `insert_with_raw` writes the same rows with the
same values in one statement of data-modifying WITHs: the values are encrypted
exactly as a flush encrypts them (`app.crypto.fields.encrypt_new_row`: the
owner's active key locked FOR SHARE, associated data naming table, column and
row, the blind indexes) and the index rows are those `index_message` writes
(`app.tickets.identifiers.digests_of`), with the reverse index of the
Message-IDs it names (`app.tickets.referenced`). `insert_ticket_with_raw` does the
same for a new ticket and its first message, the ticket row in the same
statement (its reference set by the database trigger of migration 0024, as
when the ORM inserts it). The rows returned are in the session, loaded, as
after a flush. Anything else (SQLite, no raw original, a larger one, a size
limit to enforce) returns None: the caller takes the ordinary path.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
from typing import Any

from sqlalchemy import Integer, LargeBinary, Select, String, bindparam, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.blobs.models import BlobChunk
from app.blobs.store import fits_one_statement, inserted_blob, one_chunk_inserts, one_chunk_params, one_chunk_rows
from app.crypto import message_ids
from app.crypto.fields import encrypt_new_row, new_row_uid, remember_plain
from app.crypto.kept_active import active_check, gated_insert, write_checked
from app.crypto.keys import owner_of
from app.db import loaded, table_of_model
from app.tickets import referenced
from app.tickets.identifiers import MessageIdentifier, digests_of
from app.tickets.models import Message, Ticket, key_owner_for

_ENCRYPTED = ("message_id", "sender_name", "sender_email", "subject", "body_text", "reply_text", "body_html")


def insert_with_raw(session: Session, ticket: Ticket, data: Any, *, now: dt.datetime, raw_max_bytes: int | None, touch: bool) -> Message | None:
    """`data` (an app.tickets.service.MessageInput: not imported, the service imports this) stored on `ticket` in one
    statement, with the ticket's `updated_at` set to `now` when `touch`, or None when this path does not apply."""
    if not fits_one_statement(session, data.raw, raw_max_bytes):
        return None
    session.flush()  # whatever is pending is written before the message, as the flush of the ordinary path would

    def rows() -> tuple[tuple[dict[str, Any], dict[str, Any], dict[str, Any]], dict[str, Any]]:
        columns, plain, blob_values, params = _message_rows(session, ticket.key_owner, data, now=now)
        return (columns, plain, blob_values), {**params, "m_ticket_id": ticket.id, "u_ticket_id": ticket.id, "u_updated_at": now}

    # Under the key owner's kept key, checked FOR SHARE by the statement itself (app.crypto.kept_active): no key query.
    statement = functools.partial(_statement, False, touch)
    (message_pk, blob_id), (columns, plain, blob_values) = write_checked(session, owner_of(ticket.key_owner), rows, statement)
    if touch:
        set_committed_value(ticket, "updated_at", now)  # written by the statement, as the flush would have
    return _loaded_message(session, message_pk, ticket.id, blob_id, columns, plain, blob_values)


def insert_ticket_with_raw(
    session: Session, *, controller_id: int | None, requester_name: str | None, requester_email: str | None, subject: str | None, first: Any, now: dt.datetime
) -> tuple[Ticket, Message] | None:
    """A new ticket ("new", as create_ticket makes one) with its first message `first`, in one statement (the ticket row
    first: its reference set by the database, as on the ordinary path), or None when this path does not apply."""
    if not fits_one_statement(session, first.raw, None):
        return None
    session.flush()
    owner = key_owner_for(controller_id)
    plain = {"requester_name": requester_name, "requester_email": requester_email, "subject": subject}

    def rows() -> tuple[tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]], dict[str, Any]]:
        row_uid = new_row_uid()
        ticket_columns: dict[str, Any] = {
            "controller_id": controller_id,
            "key_owner": owner,
            "status": "new",
            "assignee_id": None,
            "reply_token": secrets.token_hex(10),
            "created_at": now,
            "updated_at": now,
            "closed_at": None,
            "communication_undelivered_at": None,
            "row_uid": row_uid,
            **encrypt_new_row(session, Ticket, plain, owner=owner, row_uid=row_uid),
        }
        columns, message_plain, blob_values, params = _message_rows(session, owner, first, now=now)
        return (ticket_columns, columns, message_plain, blob_values), {**params, **{f"t_{k}": v for k, v in ticket_columns.items()}}

    statement = functools.partial(_statement, True, False)
    (ticket_pk, reference, message_pk, blob_id), (ticket_columns, columns, message_plain, blob_values) = write_checked(
        session, owner_of(owner), rows, statement
    )
    ticket = loaded(session, Ticket, id=ticket_pk, reference=reference, **ticket_columns)
    remember_plain(ticket, plain)
    return ticket, _loaded_message(session, message_pk, ticket_pk, blob_id, columns, message_plain, blob_values)


def _message_rows(session: Session, owner: int, data: Any, *, now: dt.datetime) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    # The message's columns (but ticket_id), its plaintexts, the blob's row and the statement's parameters.
    plain = {name: getattr(data, name) for name in _ENCRYPTED}
    row_uid = new_row_uid()
    columns: dict[str, Any] = {
        "direction": data.direction,
        "message_id_bidx": message_ids.digest(session, data.message_id) if data.message_id else None,
        "author_id": data.author_id,
        "key_owner": owner,
        "is_auto_reply": data.is_auto_reply,
        "flags": list(data.flags),
        "notes": list(data.notes),
        "created_at": now,
        "row_uid": row_uid,
        **encrypt_new_row(session, Message, plain, owner=owner, row_uid=row_uid),
    }
    blob_values, chunk = one_chunk_rows(session, data.raw, key_owner=owner, now=now)
    columns["raw_sha256"] = blob_values["sha256"]
    texts = [data.subject, data.body_text, data.reply_text]
    found = digests_of(session, owner, texts, [data.sender_email, *data.recipients], [data.sender_name]) or []
    params = {
        **one_chunk_params(blob_values, chunk),
        **{f"m_{k}": v for k, v in columns.items()},
        "id_owner": owner,
        "id_kinds": [kind for kind, _ in found],
        "id_digests": [digest for _, digest in found],
        "ref_digests": referenced.digests_of(session, data.references),
    }
    return columns, plain, blob_values, params


def _loaded_message(
    session: Session, message_pk: int, ticket_pk: int, blob_id: int, columns: dict[str, Any], plain: dict[str, Any], blob_values: dict[str, Any]
) -> Message:
    inserted_blob(session, blob_id, blob_values)
    message = loaded(session, Message, id=message_pk, ticket_id=ticket_pk, raw_blob_id=blob_id, **columns)
    remember_plain(message, plain)
    return message


@functools.cache
def _statement(with_ticket: bool, touch: bool, checked: bool) -> Select[Any]:
    # Built once (its values are parameters): [the ticket,] the blob, its chunk, the message (raw_blob_id from the blob,
    # ticket_id from the ticket or a parameter) and its index rows (unnest of two arrays: none when empty). Each WITH
    # runs once whether or not the final SELECT reads it. `checked`: the ticket, the blob (so all that hangs on it) and
    # the touch are written only while the WITH key_ok finds the kept key active (app.crypto.kept_active), no row else.
    tickets, chunks = table_of_model(Ticket), table_of_model(BlobChunk)
    messages, index, refs = table_of_model(Message), table_of_model(MessageIdentifier), table_of_model(referenced.MessageReference)
    key_ok = active_check().cte("key_ok") if checked else None
    new_blob, chunk = one_chunk_inserts(key_ok)
    new_chunk = chunk.returning(chunks.c.id).cte("new_chunk")
    message_columns = [c.name for c in messages.columns if c.name not in ("id", "raw_blob_id", "ticket_id")]
    values = [bindparam(f"m_{c}", type_=messages.c[c].type) for c in message_columns]
    if with_ticket:
        ticket_columns = [c.name for c in tickets.columns if c.name not in ("id", "reference")]
        ticket_values = {c: bindparam(f"t_{c}", type_=tickets.c[c].type) for c in ticket_columns}
        new_ticket = gated_insert(tickets, ticket_values, key_ok).returning(tickets.c.id, tickets.c.reference).cte("new_ticket")
        row = select(*values, new_blob.c.id, new_ticket.c.id).select_from(new_blob.join(new_ticket, literal(True)))
    else:
        row = select(*values, new_blob.c.id, bindparam("m_ticket_id", type_=messages.c.ticket_id.type))
    new_message = insert(messages).from_select([*message_columns, "raw_blob_id", "ticket_id"], row).returning(messages.c.id, messages.c.raw_blob_id)
    new_message_cte = new_message.cte("new_message")
    kinds = func.unnest(bindparam("id_kinds", type_=ARRAY(String)), type_=String)
    digests = func.unnest(bindparam("id_digests", type_=ARRAY(LargeBinary)), type_=LargeBinary)
    rows = select(new_message_cte.c.id, bindparam("id_owner", type_=Integer), kinds, digests)
    new_index = insert(index).from_select(["message_id", "key_owner", "kind", "digest"], rows).returning(index.c.id).cte("new_index")
    named = select(new_message_cte.c.id, func.unnest(bindparam("ref_digests", type_=ARRAY(LargeBinary)), type_=LargeBinary))
    new_refs = insert(refs).from_select(["message_id", "digest"], named).returning(refs.c.id).cte("new_refs")  # app.tickets.referenced
    ctes = [new_chunk, new_index, new_refs]
    if touch:  # the ticket's updated_at, as the flush of the ordinary path writes it
        touched = update(tickets).where(tickets.c.id == bindparam("u_ticket_id", type_=tickets.c.id.type))
        touched = touched if key_ok is None else touched.where(select(key_ok.c.id).exists())  # a one-time filter: before its row lock
        ctes.append(touched.values(updated_at=bindparam("u_updated_at", type_=tickets.c.updated_at.type)).returning(tickets.c.id).cte("touched"))
    if with_ticket:
        both = new_message_cte.join(new_ticket, literal(True))
        found = select(new_ticket.c.id, new_ticket.c.reference, new_message_cte.c.id, new_message_cte.c.raw_blob_id)
        return found.select_from(both).add_cte(*ctes)
    return select(new_message_cte.c.id, new_message_cte.c.raw_blob_id).add_cte(*ctes)
