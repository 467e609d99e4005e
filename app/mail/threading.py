"""Which ticket an inbound message belongs to, or which controller a new ticket goes to.

Order (issue 5): In-Reply-To / References -> the ticket holding that Message-ID,
or the ticket of the outbox row (any email the desk sent) with that Message-ID,
found through its `related_type` (`app.mail.intake.REGISTRY.ticket_of`);
then a ticket reference tag in the subject, or a domain's tag (a request's DSR-…, `REGISTRY.ticket_of_reference`),
from someone already on the ticket; then the per-ticket reply address
token (support+<token>@...); then, for mail the sender's own follow-ups name
and that arrived after them (MTAs reorder mail), the ticket of the first such
follow-up (`app.tickets.referenced`; the sender must be that follow-up's sender or
its ticket's requester, so a stranger's forged References pull nothing in).
A message that joins no ticket opens a new one,
routed by the sender's domain (ControllerDomain, parent domains included), then
by a controller identifier mentioned in the subject or body, else to triage.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Label, Select, String, Subquery, any_, bindparam, func, literal, select, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from app.compiled_once import begin_with, last_rows
from app.controllers.models import ControllerDomain, ControllerIdentifier
from app.crypto import message_ids
from app.jobs.locks import advisory_key
from app.mail.intake import REGISTRY, IntakeRegistry
from app.mail.models import OutboxEmail
from app.mail.parse import ParsedMail
from app.tickets import lookup as tickets
from app.tickets import referenced
from app.tickets.models import Message, Ticket

SCAN_CHARS = 20_000
MAX_CANDIDATES = 5_000
MAX_IDENTIFIER = 100
_IDENTIFIER_RUN = re.compile(r"[A-Za-z0-9._:/-]{1,2000}")
MAX_THREAD_IDS = 100


@dataclass(frozen=True)
class Thread:
    """The existing ticket a message joins and how it was found."""

    ticket: Ticket
    how: str  # in_reply_to | outbox | subject_reference | domain_reference | reply_token | followed_up


@dataclass(frozen=True)
class Route:
    """The controller of a new ticket (None: triage) and how it was chosen."""

    controller_id: int | None
    how: str  # domain | identifier | triage


def reply_tokens(recipients: list[str], support_address: str) -> list[str]:
    """The tokens of support+<token>@ addresses among the recipients."""
    base = support_address.partition("@")[0].split("+", 1)[0].lower()
    found = []
    for address in recipients:
        local = address.partition("@")[0].lower()
        prefix, plus, token = local.partition("+")
        if plus and prefix == base and re.fullmatch(r"[0-9a-z]{1,32}", token):
            found.append(token)
    return found


def find_sent(session: Session, mail: ParsedMail) -> OutboxEmail | None:
    """The email the desk sent (an outbox row) that this message answers: In-Reply-To first, then the latest of References."""
    wanted = [*mail.in_reply_to, *reversed(mail.references)][:MAX_THREAD_IDS]
    if not wanted:
        return None
    # Looked up by keyed hash (the same with or without angle brackets).
    hashes = message_ids.digests(session, wanted)
    rows = {row.message_id_bidx: row for row in session.scalars(_sent_statement(), {"hashes": hashes or [b""]})}
    return next((rows[h] for h in hashes if h in rows), None)


def reflected_own(session: Session, mail: ParsedMail, *addresses: str) -> OutboxEmail | None:
    """The outbox row whose Message-ID this message carries as its own (our email coming back: a mailing list or a
    forwarder reflecting it), or None. Asked of the database only when the id's domain is one of `addresses`' (the
    desk's Message-IDs are made on the privacy address's domain), so other mail costs no statement."""
    domains = {a.rpartition("@")[2].strip().lower() for a in addresses if a}
    if mail.message_id.strip().strip("<>").rpartition("@")[2].lower() not in domains:
        return None
    hashes = message_ids.digests(session, [mail.message_id])
    return session.scalars(_sent_statement(), {"hashes": hashes or [b""]}).first()


@functools.cache
def _sent_statement() -> Select[OutboxEmail]:
    return select(OutboxEmail).where(OutboxEmail.message_id_bidx.in_(bindparam("hashes", expanding=True)))  # built once, as _route_statement


def find_thread(
    session: Session,
    mail: ParsedMail,
    *,
    support_address: str,
    sent: OutboxEmail | None = None,
    registry: IntakeRegistry = REGISTRY,
    followed_up: bool = True,
    named: tuple[Ticket | None] | None = None,
) -> Thread | None:
    """The ticket this message replies to, or None; `sent` is the desk's email it answers (`find_sent`), if any.

    `followed_up=False`: the caller knows no stored message names this one's Message-ID (no lookup for it).
    `named`: the ticket holding one of the ids it names (`tickets.find_by_message_ids`), read already (a 1-tuple), or None.
    """
    ticket = named[0] if named is not None else tickets.find_by_message_ids(session, [*mail.references, *mail.in_reply_to])
    if ticket is not None:
        return Thread(ticket, "in_reply_to")
    ticket_id = registry.ticket_of(session, sent) if sent is not None else None
    ticket = session.get(Ticket, ticket_id) if ticket_id is not None else None
    if ticket is not None:
        return Thread(ticket, "outbox")
    ticket = tickets.find_by_reference(session, mail.subject)
    # References are sequential, so anyone can guess one: a reference in the subject joins
    # only mail from someone already on the ticket; a stranger's mail opens its own ticket.
    if ticket is not None and _known_sender(ticket, mail.from_email):
        return Thread(ticket, "subject_reference")
    ticket_id = registry.ticket_of_reference(session, mail.subject) if "-" in mail.subject else None
    ticket = session.get(Ticket, ticket_id) if ticket_id is not None else None
    if ticket is not None and _known_sender(ticket, mail.from_email):
        return Thread(ticket, "domain_reference")
    for token in reply_tokens(mail.recipients, support_address):
        ticket = tickets.find_by_reply_token(session, token)
        if ticket is not None:
            return Thread(ticket, "reply_token")
    ticket = _followed_up(session, mail) if followed_up else None
    return Thread(ticket, "followed_up") if ticket is not None else None


def serialise_sender(session: Session, mail: ParsedMail) -> None:
    """On Postgres, before the lookups of an ingest: wait for any other ingest from the same sender to end.

    Two messages of one person ingested at the same moment (a follow-up and the original it answers, reordered by the
    MTAs) each saw nothing of the other in their own snapshot and opened two tickets, two requests and two clocks. A
    transaction-level advisory lock keyed by the sender's address (a SHA-256 derived key: nothing readable in
    pg_locks) orders them: taken before the duplicate lookup, every lookup after it (each statement a snapshot of its
    own under READ COMMITTED) sees what the other one committed, by its References or by the reverse index, so nothing
    is looked up twice. SQLite needs nothing: BEGIN IMMEDIATE already runs one ingest at a time. One statement, or none.
    """
    if mail.from_email and session.get_bind().dialect.name == "postgresql":
        # The key (an int) written into the text, as app.audit's chain lock: no ORM statement to compile and bind.
        key = int(advisory_key(f"ingest sender {mail.from_email.strip().lower()}"))
        conn, statement = session.connection(), f"SELECT pg_advisory_xact_lock({key})"
        if not begin_with(conn, statement):  # the transaction's first statement: with its BEGIN, one round trip
            last_rows(conn, statement)  # after the lookups of a reply: on the cursor (app.compiled_once)


def _followed_up(session: Session, mail: ParsedMail) -> Ticket | None:
    """The ticket of the first stored message that names this one and came from the same person (its sender, or its
    ticket's requester, compared by blind index under that ticket's key), or None."""
    if not mail.from_email:
        return None
    for _, ticket_id, key_owner, sender_bidx, requester_bidx in referenced.referencing(session, mail.message_id):
        mine = Message.sender_email.index_value(session, mail.from_email, controller_id=key_owner)
        if mine is not None and mine in (sender_bidx, requester_bidx):
            return session.get(Ticket, ticket_id)
    return None


def reused_thread(session: Session, ticket_id: int, address: str) -> Ticket | None:
    """The ticket holding a Message-ID that another message now reuses, when that message's sender is already on it.

    A stranger's message under an id someone else used opens its own thread instead (noted as a reused id): otherwise
    whoever sends first under a guessed or copied id would take in the other's mail, a data subject's request included
    (its DSR and 24-hour clock never opened).
    """
    ticket = session.get(Ticket, ticket_id)
    return ticket if ticket is not None and _known_sender(ticket, address) else None


def _known_sender(ticket: Ticket, address: str) -> bool:
    """Whether the address is the ticket's requester or sent one of its messages."""
    wanted = address.strip().lower()
    if not wanted:
        return False
    known = {(ticket.requester_email or "").strip().lower()}
    known.update((m.sender_email or "").strip().lower() for m in ticket.messages if m.direction == "inbound")
    return wanted in known


def _parent_domains(domain: str) -> list[str]:
    if not re.fullmatch(r"[a-z0-9.-]{1,253}", domain.lower()):
        return []  # not a DNS name (IDN in Unicode, junk): no domain routing, never a bad query
    labels = domain.strip(".").lower().split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


@functools.cache
def _route_statement() -> Select[tuple[int, int]]:
    # Built once: constructing the union (its clauses, the IN lists) cost about 1 ms of CPU a new ticket, three
    # times the query. The lists are expanding parameters, rendered at execution (an empty one matches nothing).
    both, first = _routes(lambda domain: domain.in_(bindparam("domains", expanding=True)), lambda name: name.in_(bindparam("candidates", expanding=True)))
    return select(both.c.controller_id, both.c.by_identifier).order_by(*first).limit(1)


def _routes(domain_in: Callable[[Any], Any], candidate_in: Callable[[Any], Any]) -> tuple[Subquery, tuple[Any, Any]]:
    # The controllers `route_new` may choose, (controller_id, by_identifier: 0 by domain, 1 by identifier, rank), and
    # the order the first one is chosen in: a registered domain (the longest) before an identifier (the first made).
    by_domain = select(ControllerDomain.controller_id, literal(0).label("by_identifier"), (-func.length(ControllerDomain.domain)).label("rank")).where(
        domain_in(ControllerDomain.domain)
    )
    by_identifier = select(ControllerIdentifier.controller_id, literal(1).label("by_identifier"), ControllerIdentifier.id.label("rank")).where(
        candidate_in(func.lower(ControllerIdentifier.identifier))
    )
    both = union_all(by_domain, by_identifier).subquery()
    return both, (both.c.by_identifier, both.c.rank)


def route_parameters(mail: ParsedMail) -> dict[str, list[str]]:
    """The domains and identifier candidates `route_new` looks a message's controller up by (for `_route_statement`)."""
    haystack = f"{mail.subject}\n{mail.body_text[:SCAN_CHARS]}"
    return {"domains": _parent_domains(mail.from_email.rpartition("@")[2]), "candidates": sorted(identifier_candidates(haystack))[:MAX_CANDIDATES]}


@functools.cache
def route_value() -> Label[int]:
    """`route_new`'s answer as one column to select beside another statement (Postgres: its lists as array parameters
    "route_domains" and "route_candidates", `route_parameters`): the controller id times 2, plus 1 when found by an
    identifier; NULL: triage. Read it with `route_of`."""
    domains, candidates = bindparam("route_domains", type_=ARRAY(String)), bindparam("route_candidates", type_=ARRAY(String))
    both, first = _routes(lambda domain: domain == any_(domains), lambda name: name == any_(candidates))
    return select(both.c.controller_id * 2 + both.c.by_identifier).order_by(*first).limit(1).scalar_subquery().label("route")


def route_of(value: int | None) -> Route:
    """The `Route` a `route_value` column holds."""
    return Route(None, "triage") if value is None else Route(value // 2, "identifier" if value % 2 else "domain")


def route_new(session: Session, mail: ParsedMail) -> Route:
    """The controller a new ticket from this message belongs to: one statement whatever the number of controllers.

    The sender's registered domain (the most specific one) wins; else an identifier the subject or body
    names (of the identifiers the text could contain, not every identifier: `identifier_candidates`), else triage.
    """
    wanted = route_parameters(mail)
    if not wanted["domains"] and not wanted["candidates"]:
        return Route(None, "triage")
    found = session.execute(_route_statement(), wanted).first()
    if found is None:
        return Route(None, "triage")
    return Route(found.controller_id, "identifier" if found.by_identifier else "domain")


def identifier_candidates(text: str) -> set[str]:
    """Every lower-cased substring of `text` that could be a controller identifier standing on its own.

    Identifiers are letters, digits and . _ : / - starting with a letter or digit (app.controllers), matched
    case-insensitively with no letter or digit touching either end: so a candidate starts where a letter or
    digit follows no other, and ends at the end of the run or before a punctuation character.
    """
    found: set[str] = set()
    for token in _IDENTIFIER_RUN.findall(text):
        starts = [i for i, c in enumerate(token) if c.isalnum() and (i == 0 or not token[i - 1].isalnum())]
        ends = [j for j in range(1, len(token) + 1) if j == len(token) or not token[j].isalnum()]
        found.update(token[i:j].lower() for i in starts for j in ends if i < j <= i + MAX_IDENTIFIER)
    return found
