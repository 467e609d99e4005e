"""Legal holds: placing, lifting, listing, and the check the deletion engine asks about every item of every run.

A hold covers a whole controller, one ticket, or one subject within a controller (matched by the
controller's email blind index: the ticket's requester, a message's sender, or the subject of a subject-scope
run such as a DSR erasure). While active (not lifted, end date in the future) the engine leaves what it covers
untouched and reports it as kept with the hold's reason ("hold 3: litigation"). When a hold ends, the items
it kept are due at once: the next retention run takes them, and what a DSR erasure (or any run other than
retention's) kept under it is taken by a release run (`app.retention.release`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from app.addresses import normalise_email
from app.audit.service import record
from app.controllers.models import Controller
from app.crypto.cipher import CryptoError
from app.db import ids_in
from app.deletion.holds import HoldFacts
from app.deletion.models import DeletionRun
from app.deletion.report import Item
from app.deletion.scope import digests
from app.exceptions import NotFound, Refused
from app.principal import Principal
from app.retention.models import HOLD_BASES, RetentionHold
from app.retention.policies import RetentionError
from app.tickets.models import Message, Ticket, key_owner_for

# How a controller is told each basis (the DSR's notice, its page).
BASIS_WORDS = {
    "accounting": "accounting records (statutory retention)",
    "aml_kyc": "anti-money-laundering / know-your-customer records",
    "clickwrap_log": "click-wrap acceptance log",
    "litigation": "litigation",
    "regulator_request": "a regulator's request",
    "other": "other legal obligation",
}
# Only these may be placed "until lifted"; any other basis needs an end date (issue 14 item 2).
INDEFINITE_BASES = ("litigation", "regulator_request")
# The longest matter text a hold keeps (characters), and the last year an end date may name.
MAX_TEXT = 2000
LAST_YEAR = 2200
MAX_ADDRESS = 254  # RFC 5321's path limit


class HoldNotFound(RetentionError, NotFound):
    """No hold with that id."""


class InvalidHold(RetentionError, Refused):
    """A hold that cannot be placed or lifted as asked (nothing was written)."""


def end_of(day: str) -> dt.datetime:
    """The end (exclusive, UTC) of the day `day` names as YYYY-MM-DD; InvalidHold when not a date or after LAST_YEAR."""
    try:
        parsed = dt.date.fromisoformat(day.strip())
    except ValueError:
        raise InvalidHold("the end date must be a date as YYYY-MM-DD") from None
    if parsed.year > LAST_YEAR:
        raise InvalidHold(f"the end date must be in {LAST_YEAR} or earlier (or, for litigation and regulator requests, until lifted)")
    return dt.datetime.combine(parsed, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=1)


def _subject_address(raw: str | None) -> str:
    """The subject's address, validated as every form's (app.addresses); InvalidHold when empty, too long or invalid."""
    value = (raw or "").strip()
    if not value:
        raise InvalidHold("a subject hold needs the subject's email address")
    if len(value) > MAX_ADDRESS:
        raise InvalidHold(f"the subject's email address is longer than {MAX_ADDRESS} characters")
    try:
        return normalise_email(value)
    except Refused:
        raise InvalidHold("the subject's email address is not a valid email address") from None


def _matter(basis: str, text: str) -> str:
    """The hold's text, trimmed; InvalidHold when too long, or empty on the basis 'other' (the controller would be told nothing)."""
    value = " ".join((text or "").split())
    if len(value) > MAX_TEXT:
        raise InvalidHold(f"the hold's text is longer than {MAX_TEXT} characters")
    if basis == "other" and not value:
        raise InvalidHold("a hold on another legal basis needs a text naming the obligation (the controller is told it)")
    return value


def place(
    session: Session,
    *,
    kind: str,
    basis: str,
    basis_text: str = "",
    controller_id: int | None = None,
    ticket_id: int | None = None,
    subject_email: str | None = None,
    until: dt.datetime | None,
    by: Principal,
    now: dt.datetime,
) -> RetentionHold:
    """Place a hold (flush). `until` None: until lifted (litigation, regulator). Audited.

    InvalidHold (nothing written) when incomplete or invalid: an unknown controller ("no controller N") or ticket, a
    subject's address `app.addresses` refuses or longer than MAX_ADDRESS, a text over MAX_TEXT characters or empty on
    the basis 'other', an end date in the past or after LAST_YEAR."""
    if basis not in HOLD_BASES:
        raise InvalidHold(f"unknown basis {basis[:40]!r} (one of {', '.join(HOLD_BASES)})")
    basis_text = _matter(basis, basis_text)
    if until is None and basis not in INDEFINITE_BASES:
        raise InvalidHold(f"a hold on the basis {basis} needs an end date (only {' and '.join(INDEFINITE_BASES)} may last until lifted)")
    if until is not None and until <= now:
        raise InvalidHold("the end date is in the past")
    if until is not None and (until - dt.timedelta(seconds=1)).year > LAST_YEAR:
        raise InvalidHold(f"the end date must be in {LAST_YEAR} or earlier")
    if kind == "ticket":
        ticket = session.get(Ticket, ticket_id) if ticket_id is not None else None
        if ticket is None:
            raise InvalidHold("no such ticket")
        controller_id = ticket.controller_id
    elif kind in ("controller", "subject"):
        if controller_id is None:
            raise InvalidHold(f"a {kind} hold needs its controller")
        if session.get(Controller, controller_id) is None:
            raise InvalidHold(f"no controller {controller_id}")
        ticket_id = None
    else:
        raise InvalidHold(f"unknown hold kind {kind[:20]!r}")
    address = _subject_address(subject_email) if kind == "subject" else None
    hold = RetentionHold(
        kind=kind,
        controller_id=controller_id,
        ticket_id=ticket_id,
        key_owner=key_owner_for(controller_id),
        basis=basis,
        basis_text=basis_text,
        placed_by=by.label[:100],
        placed_at=now,
        until=until,
    )
    if address is not None:
        hold.subject_email = address
    session.add(hold)
    session.flush()
    details = {"kind": kind, "basis": basis, "ticket_id": ticket_id, "until": until.strftime("%Y-%m-%dT%H:%M:%SZ") if until else None}
    record(
        session, by=by, action="retention.hold_placed", target_type="retention_hold", target_id=hold.id, controller_id=controller_id, details=details, now=now
    )
    return hold


def lift(session: Session, hold_id: int, *, by: Principal, now: dt.datetime) -> RetentionHold:
    """Lift a hold (flush): what it kept is due at once. HoldNotFound; InvalidHold when already lifted. Audited."""
    hold = session.get(RetentionHold, hold_id)
    if hold is None:
        raise HoldNotFound(f"no hold {hold_id}")
    if hold.lifted_at is not None:
        raise InvalidHold(f"hold {hold_id} was lifted already")
    hold.lifted_at, hold.lifted_by = now, by.label[:100]
    session.flush()
    record(session, by=by, action="retention.hold_lifted", target_type="retention_hold", target_id=hold.id, controller_id=hold.controller_id, now=now)
    return hold


def _ended(now: dt.datetime) -> ColumnElement[bool]:
    return RetentionHold.lifted_at.is_not(None) | (RetentionHold.until.is_not(None) & (RetentionHold.until <= now))


def list_holds(session: Session, *, include_ended: bool = False, now: dt.datetime) -> list[RetentionHold]:
    """Holds, newest first (only the active ones unless `include_ended`)."""
    stmt = select(RetentionHold).order_by(RetentionHold.id.desc())
    return list(session.scalars(stmt if include_ended else stmt.where(~_ended(now))))


def ended_holds(session: Session, *, now: dt.datetime, limit: int | None) -> tuple[list[RetentionHold], int]:
    """The lifted or ended holds, newest first (at most `limit`; None: all), and how many there are in all."""
    total = int(session.scalar(select(func.count()).select_from(RetentionHold).where(_ended(now))) or 0)
    stmt = select(RetentionHold).where(_ended(now)).order_by(RetentionHold.id.desc())
    return list(session.scalars(stmt if limit is None else stmt.limit(limit))), total


def active_holds(session: Session, controller_ids: Sequence[int], now: dt.datetime, *, ticket_ids: Sequence[int] = ()) -> list[RetentionHold]:
    """The active holds on these controllers (and their subjects) or on these tickets (one query, by index)."""
    if not controller_ids and not ticket_ids:
        return []
    on = or_(
        RetentionHold.kind.in_(("controller", "subject")) & RetentionHold.controller_id.in_(sorted(set(controller_ids)) or [0]),
        (RetentionHold.kind == "ticket") & ids_in(session, RetentionHold.ticket_id, ticket_ids),
    )
    stmt = select(RetentionHold).where(RetentionHold.lifted_at.is_(None), or_(RetentionHold.until.is_(None), RetentionHold.until > now), on)
    return list(session.scalars(stmt))


def reason(hold: RetentionHold) -> str:
    """The reason a run reports for what the hold kept: ids and codes only."""
    return f"hold {hold.id}: {hold.basis}"


_REASON = re.compile(r"^hold (\d+): ")


def hold_id_of(text: str) -> int | None:
    """The hold a reported reason names ("hold 3: litigation" -> 3); None for a reason that is not a legal hold's."""
    found = _REASON.match(text or "")
    return int(found.group(1)) if found else None


def describe(session: Session, reasons: Sequence[str], now: dt.datetime) -> dict[str, HoldFacts]:
    """The engine's hold describer: basis, its text, the last day kept (None: until lifted) and when it ended, per reason."""
    ids = {r: hold_id_of(r) for r in reasons}
    found = {h.id: h for h in session.scalars(select(RetentionHold).where(RetentionHold.id.in_(sorted({i for i in ids.values() if i}) or [0])))}
    facts: dict[str, HoldFacts] = {}
    for text, hold_id in ids.items():
        hold = found.get(hold_id or 0)
        if hold is None:
            continue
        ended = None if hold.active(now) else min(t for t in (hold.lifted_at, hold.until, now) if t is not None).date()
        facts[text] = HoldFacts(text, BASIS_WORDS.get(hold.basis, hold.basis), hold.basis_text, hold.last_day, ended)
    return facts


def _run_subject_digests(session: Session, run: DeletionRun) -> set[bytes]:
    """A subject-scope run's subject, as the controller's blind index (a DSR erasure of a held subject)."""
    if run.scope_kind != "subject" or run.controller_id is None or not run.params:
        return set()
    try:
        params = json.loads(run.params)
    except (CryptoError, ValueError):
        return set()
    known = {bytes.fromhex(h) for h in params.get("email_digests") or []}
    return known | set(digests(session, params.get("emails") or [], run.controller_id))


def check(session: Session, run: DeletionRun, items: Sequence[Item]) -> Mapping[Item, str]:
    """The engine's hold check (`app.deletion.holds`): which of these items an active hold covers, and why."""
    now = run.updated_at
    ticket_ids = sorted({i.ticket_id for i in items if i.ticket_id is not None})
    rows = session.execute(select(Ticket.id, Ticket.controller_id, Ticket.requester_email_bidx).where(ids_in(session, Ticket.id, ticket_ids)))
    tickets = {r.id: (r.controller_id, r.requester_email_bidx) for r in rows}
    controllers = {i.controller_id for i in items if i.controller_id is not None} | {c for c, _ in tickets.values() if c is not None}
    controllers |= {o for i in items for o in i.owners}  # a DSR's other controllers, quarantined mail's sender's
    if run.controller_id is not None:
        controllers.add(run.controller_id)
    found = active_holds(session, sorted(controllers), now, ticket_ids=ticket_ids)
    if not found:
        return {}
    on_controller = {h.controller_id: h for h in found if h.kind == "controller"}
    on_ticket = {h.ticket_id: h for h in found if h.kind == "ticket"}
    on_subject = [h for h in found if h.kind == "subject"]
    senders: dict[int, bytes | None] = {}
    run_subject: set[bytes] = set()
    if on_subject:
        message_ids = [i.id for i in items if i.what == "message"]
        stmt = select(Message.id, Message.sender_email_bidx).where(ids_in(session, Message.id, message_ids))
        senders = {r.id: r.sender_email_bidx for r in session.execute(stmt)}
        run_subject = _run_subject_digests(session, run)
    held: dict[Item, str] = {}
    for item in items:
        owner, requester = tickets.get(item.ticket_id or 0, (item.controller_id, None))
        owner = owner if owner is not None else item.controller_id
        hold = on_controller.get(owner) if owner is not None else None
        if hold is None:
            hold = next((on_controller[o] for o in item.owners if o in on_controller), None)
        if hold is None and item.ticket_id is not None:
            hold = on_ticket.get(item.ticket_id)
        if hold is None:
            mine = {requester, senders.get(item.id) if item.what == "message" else None, *item.subjects}
            hold = next(
                (
                    h
                    for h in on_subject
                    if h.controller_id in (owner, run.controller_id, *item.owners) and (h.subject_email_bidx in mine or h.subject_email_bidx in run_subject)
                ),
                None,
            )
        if hold is not None:
            held[item] = reason(hold)
    return held
