"""Which controller a data-subject request concerns: the ticket's routing, the registry, then the subject's other tickets.

Exactly one candidate routes the request; none or several leave it in triage
(the 24 h clock keeps running) for a privacy officer to decide.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Executable, LargeBinary, Select, String, bindparam, func, null, select, type_coerce, union_all
from sqlalchemy.orm import Session

from app.controllers.models import Controller, ControllerDomain
from app.db import table_of_model
from app.tickets.models import Ticket


@dataclass(frozen=True)
class Routing:
    """The candidate controllers and how they were found (codes only)."""

    controller_ids: list[int]
    how: list[str]

    @property
    def controller_id(self) -> int | None:
        """The single controller, or None when triage must decide."""
        return self.controller_ids[0] if len(self.controller_ids) == 1 else None


def _holding_tickets() -> Select[int]:
    """The active controllers holding at least one ticket: those under whose index key a subject's ticket can be found.

    The distinct controllers of the tickets by a walk of the ticket queue index (`ix_tickets_queue_all`, leading with
    controller_id): each step one `min(controller_id) > previous` in the index, so the cost grows with the controllers
    that hold tickets, never with the rows or with the controllers registered (issue 11 item 7: routing keyed and
    checked the index keys of all 1,000 controllers of the benchmark, 1,000 HMACs and a fingerprint over 1,000 key
    rows a request). A ticket's key owner is its controller (`key_owner_for`; a move re-keys it), so no controller
    left out holds a ticket its digest could find. `min` rather than ORDER BY ... LIMIT 1: SQLite takes no LIMIT in
    the first member of a compound SELECT, and both databases answer `min` of an indexed column from the index.
    """
    held = table_of_model(Ticket).c
    walk = select(func.min(held.controller_id).label("controller_id")).cte("ticket_controllers", recursive=True)
    following = select(func.min(held.controller_id)).where(held.controller_id > walk.c.controller_id).scalar_subquery()
    walk = walk.union_all(select(following).where(walk.c.controller_id.is_not(None)))
    holders = select(walk.c.controller_id).where(walk.c.controller_id.is_not(None))
    return select(Controller.id).where(Controller.status == "active", Controller.id.in_(holders))


# A module constant: the index keys' answer is kept per process for this very selection (app.crypto.keys).
_ACTIVE_HOLDERS = _holding_tickets()


def _parent_domains(email: str) -> list[str]:
    """The address's domain and each parent domain of it with at least two labels (a.b.example, b.example)."""
    labels = email.rpartition("@")[2].strip(".").lower().split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def _longest_domain(rows: Iterable[tuple[str, int]]) -> int | None:
    """The controller of the longest (most specific) registered domain among `rows` of (domain, controller_id)."""
    best = max(rows, key=lambda r: len(r[0]), default=None)
    return best[1] if best is not None else None


@functools.cache
def _statement(postgres: bool, tickets: bool, domains: bool) -> Executable:
    """The lookup of `_subject_candidates`, built once per shape (building it cost more CPU than running it).

    Rows are (controller, digest, NULL) of a ticket whose requester digest is one of the parameter `digests`, and
    (controller, NULL, domain) of a registered domain among the parameter `parents`.
    """
    # Core tables, not the mapped classes: the same SQL without the ORM's work on each execution.
    registered, held = table_of_model(ControllerDomain).c, table_of_model(Ticket).c
    of_domains = select(registered.controller_id, type_coerce(null(), LargeBinary), registered.domain).where(
        registered.domain.in_(bindparam("parents", expanding=True))
    )
    no_domain = type_coerce(null(), String)
    if postgres:
        # One text parameter (the digests in hex, comma-separated) split and joined as a set: a 1,000-value IN list
        # cost ~50 ms of client CPU a request (psycopg parsed the query anew each time), a bytea[] parameter ~20 ms
        # (escaping each element in text format), both by cProfile; `= ANY(array)` was planned as a scan.
        given = func.unnest(func.string_to_array(bindparam("digests", type_=String), ",")).table_valued("v").render_derived(name="d")
        joined = select(held.key_owner, held.requester_email_bidx, no_domain).join(given, held.requester_email_bidx == func.decode(given.c.v, "hex"))
        of_tickets = joined.distinct()
    else:
        of_tickets = (
            select(held.key_owner, held.requester_email_bidx, no_domain).where(held.requester_email_bidx.in_(bindparam("digests", expanding=True))).distinct()
        )
    if tickets and domains:
        return union_all(of_tickets, of_domains)  # one round trip for both
    return of_tickets if tickets else of_domains


def _subject_candidates(session: Session, email: str, *, with_domain: bool) -> tuple[int | None, set[int]]:
    """(the controller of the address's registered domain if `with_domain`, the controllers holding the subject's tickets).

    The tickets are found by the per-controller blind index: the index keys of the active controllers holding tickets
    (`_holding_tickets`) in one statement (whatever their number, issue 11 item 7), then the tickets whose index is
    any of the digests, each checked against its own controller's, in a second one that also reads the registered domains when asked.
    """
    parents = _parent_domains(email) if with_domain else []
    digests = Ticket.requester_email.index_values_of_controllers(session, email, _ACTIVE_HOLDERS) if email.strip() else {}
    if not digests and not parents:
        return None, set()
    postgres = session.get_bind().dialect.name == "postgresql"
    wanted = set(digests.values())
    params = {"parents": parents, "digests": ",".join(sorted(d.hex() for d in wanted)) if postgres else list(wanted)}
    rows = session.execute(_statement(postgres, bool(digests), bool(parents)), params).all()
    holders = {owner for owner, digest, domain in rows if domain is None and digests.get(owner) == digest}
    return _longest_domain((domain, cid) for cid, _digest, domain in rows if domain is not None), holders


def controllers_of_subject(session: Session, email: str) -> set[int]:
    """Controllers holding tickets of this requester, by the per-controller blind index.

    Two statements whatever the number of controllers (issue 11 item 7): the index keys of the active controllers
    holding tickets in one, then the tickets whose index is any of the digests, each checked against its own controller's.
    """
    if not email.strip():
        return set()
    return _subject_candidates(session, email, with_domain=False)[1]


def route(session: Session, *, ticket: Ticket | None, subject_email: str | None) -> Routing:
    """The controllers a request concerns, from the ticket, the registry's domains and the subject's tickets."""
    found: dict[int, list[str]] = {}
    if ticket is not None and ticket.controller_id is not None:
        found.setdefault(ticket.controller_id, []).append("ticket")
    if subject_email:
        # The registered domain and the subject's tickets in one round trip after the index keys (two statements).
        by_domain, holders = _subject_candidates(session, subject_email, with_domain=True)
        if by_domain is not None:
            found.setdefault(by_domain, []).append("domain")
        for cid in sorted(holders):
            found.setdefault(cid, []).append("blind_index")
    how = sorted({h for hs in found.values() for h in hs}) or ["none"]
    return Routing(sorted(found), how)
