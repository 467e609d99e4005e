"""Which stored messages name a Message-ID in their In-Reply-To or References (issue 11 item 3): the reverse index.

Mail is reordered on the way: a subject's follow-up (naming the original in
In-Reply-To / References) can reach the desk before the original. The
follow-up then opens the ticket; when the original arrives, its own
Message-ID is found here and it joins that ticket (`app.mail.threading`)
instead of opening a second ticket, a second request and a second 24-hour
clock. Each row is the keyed hash of one Message-ID a message names
(`app.crypto.message_ids.digest`, the same as `Message.message_id_bidx`):
no Message-ID in plaintext. Ids differing only in the case of their domain
part are one id (`message_ids.normalised`); rows written before that hold the
exact id's hash, so the lookups here try both (`message_ids.matching`). The
rows go with their message (a foreign key with ON DELETE CASCADE; the deletion
engine deletes them in bulk first).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from sqlalchemy import ForeignKey, Insert, Label, LargeBinary, Select, exists, insert, select, true
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.crypto import message_ids
from app.crypto.cipher import INDEX_BYTES
from app.db import Base, intpk, table_of_model
from app.tickets.models import Message, Ticket

# The Message-IDs of a message kept in the index: its In-Reply-To, the first of its References (the thread's root, most
# often the request itself) and the last ones (the nearest).
MAX_NAMED = 20
# The name of the flag `referenced_flag` selects beside the duplicate lookup.
REFERENCED = "referenced_by_stored"


class MessageReference(Base):
    """One Message-ID a stored message names (In-Reply-To or References), as its keyed hash."""

    __tablename__ = "message_references"

    id: Mapped[intpk]
    message_id: Mapped[int] = mapped_column(ForeignKey("ticket_messages.id", ondelete="CASCADE"), index=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(INDEX_BYTES), index=True)


def named_ids(in_reply_to: Sequence[str], references: Sequence[str], *, own: str | None) -> list[str]:
    """The Message-IDs a message names, bounded (MAX_NAMED), without repeats or its own id."""
    mine = message_ids.normalised(own or "")
    named = (*in_reply_to[:2], *references[:1], *references[-(MAX_NAMED - 3) :])
    wanted = [m for m in named if message_ids.bare(m) and message_ids.normalised(m) != mine]
    return list(dict.fromkeys(message_ids.bare(m) for m in wanted))[:MAX_NAMED]


def digests_of(session: Session, named: Iterable[str]) -> list[bytes]:
    """The keyed hashes to store for these Message-IDs (deduplicated)."""
    return list(dict.fromkeys(message_ids.digest(session, m) for m in named))


@functools.cache
def _insert() -> Insert:
    return insert(table_of_model(MessageReference))  # built once, as app.tickets.identifiers._insert


def index_references(session: Session, message_pk: int, digests: Sequence[bytes]) -> int:
    """Write the reverse index rows of a message inserted in this transaction (flush only); how many."""
    if digests:
        session.execute(_insert(), [{"message_id": message_pk, "digest": d} for d in digests])
    return len(digests)


@functools.cache
def referenced_flag() -> Label[bool]:
    """Whether a stored message names the Message-ID whose keyed hashes are the parameters of `message_ids.matching`: a
    column to select beside the duplicate lookup (app.crypto.message_ids.lookup_with), so the common answer, no, costs
    no statement."""
    return exists().where(message_ids.matching(MessageReference.digest)).label(REFERENCED)


@functools.cache
def _referencing(dialect: str) -> Select[int, int, int, bytes | None, bytes | None]:
    columns = (Message.id, Message.ticket_id, Message.key_owner, Message.sender_email_bidx, Ticket.requester_email_bidx)
    inbound = Message.direction == "inbound"
    if dialect != "postgresql":
        stmt = select(*columns).join(MessageReference, MessageReference.message_id == Message.id).join(Ticket, Ticket.id == Message.ticket_id)
        return stmt.where(message_ids.matching(MessageReference.digest), inbound).order_by(Message.id).limit(MAX_NAMED)
    # Driven from the reverse index row by row (a LATERAL with a LIMIT is never flattened): a generic plan made while the
    # tables' statistics said empty (a new database) hashed every inbound message against every index row instead,
    # 2-10 ms a lookup after a few hundred messages and growing with them (EXPLAIN ANALYZE through auto_explain).
    named = select(*columns).join(Ticket, Ticket.id == Message.ticket_id).where(Message.id == MessageReference.message_id, inbound).limit(1).lateral()
    stmt = select(*named.c).select_from(MessageReference).join(named, true()).where(message_ids.matching(MessageReference.digest))
    return stmt.order_by(named.c.id).limit(MAX_NAMED)


def referencing(session: Session, message_id: str) -> list[tuple[int, int, int, bytes | None, bytes | None]]:
    """The inbound messages naming `message_id`, earliest first: (id, ticket id, key owner, sender's and requester's blind index)."""
    rows = session.execute(_referencing(session.get_bind().dialect.name), message_ids.params(session, message_id)).all()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]
