"""Which controller a data-subject request concerns: the ticket's routing, the registry, then the subject's other tickets.

Exactly one candidate routes the request; none or several leave it in triage
(the 24 h clock keeps running) for a privacy officer to decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import String, bindparam, func, select
from sqlalchemy.orm import Session

from app.controllers.models import Controller, ControllerDomain
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


def _domain_match(session: Session, email: str) -> int | None:
    domain = email.rpartition("@")[2].strip(".").lower()
    labels = domain.split(".")
    parents = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    if not parents:
        return None
    rows = session.execute(select(ControllerDomain.domain, ControllerDomain.controller_id).where(ControllerDomain.domain.in_(parents))).all()
    return max(rows, key=lambda r: len(r.domain)).controller_id if rows else None


def controllers_of_subject(session: Session, email: str) -> set[int]:
    """Controllers holding tickets of this requester, by the per-controller blind index.

    Two statements whatever the number of controllers (issue 11 item 7): the active controllers' index keys
    in one, then the tickets whose index is any of the digests, each checked against its own controller's.
    """
    if not email.strip():
        return set()
    active = select(Controller.id).where(Controller.status == "active")
    digests = Ticket.requester_email.index_values_of_controllers(session, email, active)
    if not digests:
        return set()
    wanted = set(digests.values())
    if session.get_bind().dialect.name == "postgresql":
        # One text parameter (the digests in hex, comma-separated) split and joined as a set: a 1,000-value IN list
        # cost ~50 ms of client CPU a request (psycopg parsed the query anew each time), a bytea[] parameter ~20 ms
        # (escaping each element in text format), both by cProfile; `= ANY(array)` was planned as a scan.
        joined_hex = ",".join(sorted(digest.hex() for digest in wanted))
        given = func.unnest(func.string_to_array(bindparam("digests", joined_hex, type_=String), ",")).table_valued("v").render_derived(name="d")
        stmt = select(Ticket.key_owner, Ticket.requester_email_bidx).join(given, Ticket.requester_email_bidx == func.decode(given.c.v, "hex"))
        rows = session.execute(stmt.distinct())
    else:
        rows = session.execute(select(Ticket.key_owner, Ticket.requester_email_bidx).where(Ticket.requester_email_bidx.in_(wanted)).distinct())
    return {owner for owner, digest in rows if owner in digests and digests[owner] == digest}


def route(session: Session, *, ticket: Ticket | None, subject_email: str | None) -> Routing:
    """The controllers a request concerns, from the ticket, the registry's domains and the subject's tickets."""
    found: dict[int, list[str]] = {}
    if ticket is not None and ticket.controller_id is not None:
        found.setdefault(ticket.controller_id, []).append("ticket")
    if subject_email:
        by_domain = _domain_match(session, subject_email)
        if by_domain is not None:
            found.setdefault(by_domain, []).append("domain")
        for cid in sorted(controllers_of_subject(session, subject_email)):
            found.setdefault(cid, []).append("blind_index")
    how = sorted({h for hs in found.values() for h in hs}) or ["none"]
    return Routing(sorted(found), how)
