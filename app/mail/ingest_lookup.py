"""The first lookups of an ingest (app.mail.inbound) in one statement: duplicate, prechecks, thread, the email answered, route.

After the sender's lock (`threading.serialise_sender`; a reply joining its stored thread needs none: `look_up`), one
statement reads the stored message under this Message-ID (a duplicate, or a reused id), with the intake observers'
prechecks and whether a stored message names this one (`referenced.REFERENCED`) beside it. On Postgres the same
statement also reads what the later steps would each have asked in a statement of their own: the ticket holding an id
this message names (`tickets.find_by_message_ids`), the desk's email it answers (`threading.find_sent`, In-Reply-To
first, then the latest of References), and, for a message naming no id (a new ticket, most likely), the controller it
would be routed to (`threading.route_new`). Each is a scalar subquery with array parameters (one plan whatever the
number of ids), answered exactly as the statement it replaces. SQLite, and the rare lookup that cannot carry them,
leave them to those statements (`Looked.folded` False).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.crypto import message_ids
from app.mail.intake import IntakeRegistry
from app.mail.models import OutboxEmail
from app.mail.parse import ParsedMail
from app.mail.threading import MAX_THREAD_IDS, Route, route_of, route_parameters, route_value, serialise_sender
from app.tickets import referenced
from app.tickets.lookup import MAX_NAMED_IDS
from app.tickets.models import Message, Ticket

_LOOKED_UP = (Message.id, Message.ticket_id, Message.raw_sha256, Message.direction)
_NAMED, _SENT, _ROUTE = "thread_by_ids", "sent", "route"


@dataclass(frozen=True)
class Looked:
    """What the first statement read (`look_up`)."""

    existing: Any  # the stored message under this Message-ID (a Row: id, ticket_id, raw_sha256, direction), or None
    prechecked: dict[str, bool] | None  # the intake observers' prechecks; None: not read (nobody may rely on them)
    followed_up: bool  # False: no stored message names this one (no lookup for it)
    folded: bool  # whether the three below were read; False: ask `find_thread`, `find_sent` and `route_new` as usual
    named: Ticket | None = None  # the ticket holding the latest stored message this one names
    sent: OutboxEmail | None = None  # the desk's email this one answers
    route: Route | None = None  # where a new ticket from it goes; None: not read (it names ids), ask `route_new`


def look_up(session: Session, mail: ParsedMail, *, registry: IntakeRegistry, raw_sha256: str) -> Looked:
    """Take the sender's lock (Postgres), then read everything above in one statement (two when the process's remembered
    platform key has changed: `message_ids.lookup_with`).

    A message naming ids (a reply) is read before the lock: when it joins the thread they name, or is the same bytes
    again (`raw_sha256`), it opens no ticket and needs no lock (none was taken for it before the lookups were folded
    either); else the lock, and the same read again, so what a concurrent ingest of the sender committed meanwhile counts.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and mail.from_email and (mail.references or mail.in_reply_to):
        first = _read(session, mail, registry, folded=True)
        if first.folded and ((first.existing is None and first.named is not None) or _same(first.existing, raw_sha256)):
            return first
    serialise_sender(session, mail)
    return _read(session, mail, registry, folded=postgres)


def _same(existing: Any, raw_sha256: str) -> bool:
    # As app.mail.inbound: the same bytes, or an inbound message kept without its digest (a duplicate either way).
    return existing is not None and (existing.raw_sha256 == raw_sha256 or (existing.raw_sha256 is None and existing.direction == "inbound"))


def _read(session: Session, mail: ParsedMail, registry: IntakeRegistry, *, folded: bool) -> Looked:
    beside: dict[str, Any] = {**registry.prechecks(), referenced.REFERENCED: referenced.referenced_flag()}
    routed = folded and not (mail.references or mail.in_reply_to)
    if routed:
        beside[_ROUTE] = route_value()
    # A message naming no id answers nothing and joins no thread by id: no ticket or email to read beside it (their
    # columns, some seventy, were most of the lookup's client time for the commonest message, a new one).
    joined = _joined() if folded and not routed else None
    more = functools.partial(_parameters, mail, routed) if folded else None
    existing, read = message_ids.lookup_with(session, mail.message_id, Message, Message.message_id_bidx, _LOOKED_UP, beside=beside, joined=joined, more=more)
    if read is None:
        return Looked(existing, None, True, False)
    named, sent, route = read.pop(_NAMED, None), read.pop(_SENT, None), read.pop(_ROUTE, None)
    followed_up = bool(read.pop(referenced.REFERENCED))
    return Looked(existing, read, followed_up, folded, named, sent, route_of(route) if routed else None)


def _parameters(mail: ParsedMail, routed: bool, index_key: bytes) -> dict[str, Any]:
    if routed:
        wanted = route_parameters(mail)
        return {"route_domains": wanted["domains"], "route_candidates": wanted["candidates"]}
    named = [m for m in [*mail.references, *mail.in_reply_to] if m][-MAX_NAMED_IDS:]
    answered = [*mail.in_reply_to, *reversed(mail.references)][:MAX_THREAD_IDS]
    return {"named_ids": message_ids.digests_with(index_key, named), "answered_ids": message_ids.digests_with(index_key, answered)}


@functools.cache
def _joined() -> dict[str, tuple[Any, Any]]:
    # Built once: the lookup's statement is cached by the identity of its parts (app.crypto.message_ids._statement).
    return {_NAMED: (Ticket, Ticket.id == _named_ticket()), _SENT: (OutboxEmail, OutboxEmail.id == _sent_row())}


@functools.cache
def _named_ticket() -> ColumnElement[int]:
    # Ordered by `id + 0`, not `id`: a plan made while the statistics said empty walked the primary key backwards through
    # every message, filtering (auto_explain); the expression leaves the Message-ID index and a sort of the few it finds.
    named = bindparam("named_ids", type_=ARRAY(LargeBinary))
    latest = (Message.id + literal_column("0")).desc()
    return select(Message.ticket_id).where(Message.message_id_bidx == any_(named)).order_by(latest).limit(1).scalar_subquery()


@functools.cache
def _sent_row() -> ColumnElement[int]:
    # The first of the ids (in their order) the desk sent an email under; the row's id breaks a tie (one id, two rows).
    answered = bindparam("answered_ids", type_=ARRAY(LargeBinary))
    first = func.array_position(answered, OutboxEmail.message_id_bidx)
    return select(OutboxEmail.id).where(OutboxEmail.message_id_bidx == any_(answered)).order_by(first, OutboxEmail.id).limit(1).scalar_subquery()
