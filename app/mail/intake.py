"""The intake registry: what happens to an inbound message after it is stored is decided by the domains, not by mail.

`app.mail.inbound.ingest_message` stores a message on its ticket (new or joined)
and then offers one `Inbound` value to the handlers the domains registered, in
registration order: the first handler that returns a code has claimed the
message (and has acted, in the same transaction); the others are not asked.
Fallback handlers are asked after every ordinary one, whatever the
registration order, so a catch-all of one domain (the DSR classifier's
suggestion) never hides a message from a domain registered later. A message
no handler claims stays what it already is: a ticket message.

A domain also registers a *ticket finder* for the `related_type` of the outbox
rows it writes ("dsr" -> the request's ticket), so a reply to any email the
desk sent threads onto the ticket it belongs to (`app.mail.threading`).

Design: one registry per process, `REGISTRY`, filled at app creation
(`create_app` -> `app.dsr.setup.register`, one call per domain). Registration is
by name and idempotent (registering a name again replaces the handler in its
place), so the many apps a test run or a worker process creates leave one
entry per handler. Services find the registry without an app (they never read
`current_app`); workers and the CLI fill it through create_app like the web.
Tests add a handler for one test with `REGISTRY.registered(name, handler)`
(or anything, finders included, inside `with REGISTRY.scoped():`), which
restores the registry afterwards.

A handler that usually has nothing to do (the erased-subject flag: nobody
erased at all; the instruction handler: no forward ever sent) may register a
*precheck*, a SQL boolean that is false when it certainly has nothing to do
(an observer nothing to mark, a claimer nothing to claim). `prechecks()` gives
them as labelled columns for the ingest to select beside a statement it runs
anyway; the values it passes on the `Inbound` (`prechecked`) let `offer` skip a
handler whose precheck was false, so that handler costs no statement of its
own. Without values (None, or no value for that handler) it is asked as always.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import ColumnElement, Label
from sqlalchemy.orm import Session

from app.mail.models import OutboxEmail
from app.mail.parse import ParsedMail
from app.principal import Principal
from app.tickets.models import Message, Ticket


@dataclass(frozen=True)
class Inbound:
    """One stored inbound message, as the handlers see it.

    `replied_to` is the outbox row (an email the desk sent: a reply, an
    acknowledgement, a forward, a notice) whose Message-ID this message names in
    In-Reply-To or References, if any; its `kind` and `related_type` /
    `related_id` say which domain owns the original.
    """

    ticket: Ticket
    message: Message
    mail: ParsedMail
    raw: bytes
    new_ticket: bool
    replied_to: OutboxEmail | None
    support_address: str
    privacy_address: str
    # The handlers' prechecks as the ingest read them in this transaction (name -> value), if it did.
    prechecked: Mapping[str, bool] | None = None

    @property
    def replied_kind(self) -> str | None:
        """The kind of the desk's email this answers ("dsr_forward", "acknowledgement", ...), or None."""
        return self.replied_to.kind if self.replied_to is not None else None


class Handler(Protocol):
    """Claims an inbound message by returning a short code of what it did (and doing it), or returns None to pass."""

    def __call__(self, session: Session, inbound: Inbound, *, by: Principal, now: dt.datetime) -> str | None: ...


# (session, related_id) -> the id of the ticket the related object belongs to, or None.
TicketFinder = Callable[[Session, int], int | None]


# (session, subject) -> the id of the ticket a domain's reference tag in the subject names (e.g. "DSR-2026-000001"), or None.
ReferenceFinder = Callable[[Session, str], int | None]


@dataclass(frozen=True)
class Claim:
    """Which handler claimed a message (its registered name) and what it did (its code)."""

    handler: str
    code: str


@dataclass(frozen=True)
class _Entry:
    name: str
    handler: Handler
    fallback: bool
    observer: bool = False
    precheck: ColumnElement[bool] | None = None


class IntakeRegistry:
    """The handlers and ticket finders the domains registered; see the module docstring."""

    def __init__(self) -> None:
        self._entries: list[_Entry] = []
        self._finders: dict[str, TicketFinder] = {}
        self._references: dict[str, ReferenceFinder] = {}
        self._checks: dict[str, Label[bool]] | None = None  # `prechecks()`, made once per registration (every ingest asks)

    def add(self, name: str, handler: Handler, *, fallback: bool = False, observer: bool = False, precheck: ColumnElement[bool] | None = None) -> None:
        """Register `handler` under `name` (e.g. "dsr.instruction"); the same name again replaces it in its place.

        An `observer` is asked about every stored message before any other handler and never claims one (what it
        returns is ignored): it marks or flags, and the message still reaches the handler that owns it. A
        `precheck` is false when the handler certainly has nothing to do (see the module docstring).
        """
        entry = _Entry(name, handler, fallback, observer, precheck)
        self._checks = None
        for i, existing in enumerate(self._entries):
            if existing.name == name:
                self._entries[i] = entry
                return
        self._entries.append(entry)

    def remove(self, name: str) -> None:
        """Forget the handler registered under `name` (none: no-op)."""
        self._entries = [e for e in self._entries if e.name != name]
        self._checks = None

    def add_ticket_finder(self, related_type: str, finder: TicketFinder) -> None:
        """How to find the ticket of an outbox row with this `related_type` (one finder per type; again: replaced)."""
        self._finders[related_type] = finder

    def add_reference_finder(self, name: str, finder: ReferenceFinder) -> None:
        """How to find the ticket a domain's reference tag in a subject names (one per name; again: replaced)."""
        self._references[name] = finder

    def ticket_of_reference(self, session: Session, subject: str) -> int | None:
        """The ticket the first domain reference tag in `subject` names, or None."""
        for finder in list(self._references.values()):
            ticket_id = finder(session, subject)
            if ticket_id is not None:
                return ticket_id
        return None

    @property
    def names(self) -> list[str]:
        """The registered handlers' names in the order they are asked (ordinary ones first, then fallbacks)."""
        return [e.name for e in self._ordered()]

    def prechecks(self) -> dict[str, Label[bool]]:
        """The handlers' prechecks by handler name, each labelled ("precheck_<n>"), to select beside another statement."""
        if self._checks is None:
            checks = [e for e in self._ordered() if e.precheck is not None]
            self._checks = {e.name: e.precheck.label(f"precheck_{n}") for n, e in enumerate(checks) if e.precheck is not None}
        return dict(self._checks)

    def _ordered(self) -> list[_Entry]:
        observers = [e for e in self._entries if e.observer]
        claimers = [e for e in self._entries if not e.observer]
        return observers + [e for e in claimers if not e.fallback] + [e for e in claimers if e.fallback]

    @contextmanager
    def scoped(self) -> Iterator[IntakeRegistry]:
        """Yield this registry; whatever is added or removed inside the `with` block is undone at its end (tests)."""
        saved = (list(self._entries), dict(self._finders), dict(self._references))
        try:
            yield self
        finally:
            self._entries, self._finders, self._references = saved
            self._checks = None

    @contextmanager
    def registered(self, name: str, handler: Handler, *, fallback: bool = False) -> Iterator[None]:
        """Register one handler for the duration of a `with` block (tests), then restore the registry."""
        with self.scoped():
            self.add(name, handler, fallback=fallback)
            yield

    def ticket_of(self, session: Session, row: OutboxEmail) -> int | None:
        """The ticket an outbox row belongs to: its own ticket, or what its domain's finder says; None when unknown."""
        if row.related_id is None or row.related_type is None:
            return None
        if row.related_type == "ticket":
            return row.related_id
        finder = self._finders.get(row.related_type)
        return finder(session, row.related_id) if finder is not None else None

    def offer(self, session: Session, inbound: Inbound, *, by: Principal, now: dt.datetime) -> Claim | None:
        """Ask each handler in turn until one claims the message; returns that claim, or None when nobody did."""
        for entry in self._ordered():
            if inbound.prechecked is not None and inbound.prechecked.get(entry.name) is False:
                continue  # its precheck, read in this transaction, says it has nothing to do
            code = entry.handler(session, inbound, by=by, now=now)
            if code is not None and not entry.observer:
                return Claim(entry.name, code)
        return None


REGISTRY = IntakeRegistry()
