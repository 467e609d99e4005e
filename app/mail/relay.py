"""The relay's health as the outbox saw it, and the circuit breaker around it.

One job-state row (`mail.relay`) holds the relay's last success, last failure
(time and a scrubbed reason) and the count of consecutive temporary failures.
/healthz and `status` read it; the outbox writes it in the transaction that
records each attempt.

Circuit breaker (issue 15 item 4): after `OPEN_AFTER` consecutive temporary
failures the breaker is *open*: a claimed row is put back (not counted as an
attempt) instead of hammering a relay that is down, except one *probe* per
`PROBE_EVERY` (half-open). The first success closes it, and every queued row
(waiting in retry backoff, held for a probe, or already due and not yet
taken) is made due and rung in `kind_rank` order (DSR forwards first), so the
backlog leaves when the relay returns rather than minutes later. A 5xx
refusal is the relay working: it neither opens nor closes the breaker.

The order on the relay's return (`kind_rank`) is kept three ways: a row held
for a probe is due at the probe's tick plus `RANK_STAGGER` per rank
(`probe_slot`), so a DSR forward takes the probe and the others wake after
it; the release ranks every queued row; and for `ORDER_WINDOW` after the
release a row gives way (`gives_way`, rung again after `ORDER_WAIT`) while a
row of a higher rank is due and not yet taken, or being sent. The window
bounds the wait, so nothing starves: a forward whose doorbell was lost holds
the rest back `ORDER_WINDOW` at most.

A relay outage loses no mail: a temporary failure while the breaker is open
(a failed probe, or the failure that opened it) is the relay's, not the
row's, so it does not count against the row's attempts; the row waits for
the next probe (`held_until`) and gives up only after waiting the outage
limit (`OutboxTiming.outage_give_up`, days) in this outage.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.jobs.models import JobState
from app.mail.models import OutboxEmail

log = logging.getLogger(__name__)

RELAY_STATE = "mail.relay"
OPEN_AFTER = 3
PROBE_EVERY = dt.timedelta(seconds=15)
# Kinds sent first, in this order, when the backlog is released or swept (`kind_rank`): a DSR forward first, since a
# late one breaks the 24-hour promise to the controller (P§11.3, W§12.1) and its leaving is what settles the request;
# then the privacy officers' escalation about a forward at risk; then everything else.
FIRST_KINDS = ("dsr_forward", "dsr_escalation")
# A row held for a probe wakes this much later per rank (`probe_slot`): forwards at the tick, escalations 1 s later,
# the rest 2 s later; a probe that succeeds within that time finds them still waiting and releases them in order.
RANK_STAGGER = dt.timedelta(seconds=1)
# For this long after the relay's return a row gives way to a higher-ranked one released with it (`gives_way`), and
# is rung again after ORDER_WAIT; after the window rows leave in the order workers take them (nothing starves).
ORDER_WINDOW = dt.timedelta(seconds=10)
ORDER_WAIT = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class RelayHealth:
    """The relay as last seen: times are aware UTC or None; `failures` counts consecutive temporary failures."""

    last_success: dt.datetime | None
    last_failure: dt.datetime | None
    last_error: str | None
    failures: int
    probe_at: dt.datetime | None
    opened_at: dt.datetime | None = None  # when the breaker opened (this outage's start); None while closed
    released_at: dt.datetime | None = None  # the last return of the relay after failures (the backlog's release)

    @property
    def open(self) -> bool:
        """True while the breaker is open (the relay failed OPEN_AFTER times in a row)."""
        return self.failures >= OPEN_AFTER


def _when(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else None


def _row(session: Session, *, lock: bool = False) -> JobState | None:
    stmt = select(JobState).where(JobState.name == RELAY_STATE)
    if lock:
        stmt = stmt.with_for_update()
    found = session.scalars(stmt.execution_options(populate_existing=True)).one_or_none()
    if found is not None or not lock:
        return found
    # The first writer creates the row; a concurrent first writer's insert loses harmlessly and we lock theirs.
    try:
        with session.begin_nested():
            session.add(JobState(name=RELAY_STATE, state={}, updated_at=dt.datetime.now(dt.UTC)))
    except IntegrityError:
        pass
    return session.scalars(stmt.execution_options(populate_existing=True)).one()


def health(session: Session) -> RelayHealth:
    """The relay's last success and failure (reads one row)."""
    row = _row(session)
    state = dict(row.state) if row is not None else {}
    return RelayHealth(
        last_success=_when(state.get("last_success")),
        last_failure=_when(state.get("last_failure")),
        last_error=state.get("last_error"),
        failures=int(state.get("failures", 0)),
        probe_at=_when(state.get("probe_at")),
        opened_at=_when(state.get("opened_at")),
        released_at=_when(state.get("released_at")),
    )


def _save(session: Session, row: JobState | None, state: dict[str, Any], now: dt.datetime) -> None:
    if row is None:
        session.add(JobState(name=RELAY_STATE, state=state, updated_at=now))
    else:
        row.state, row.updated_at = state, now
    session.flush()


def may_send(session: Session, *, now: dt.datetime, seen: RelayHealth | None = None) -> bool:
    """False while the breaker is open and this is not the moment of a probe (half-open: one send per PROBE_EVERY).

    Locks the state row for the rest of the caller's transaction when the
    breaker is open, so two workers never both take the probe. `seen`: the
    health read earlier in the same transaction (read again when None).
    """
    if not (seen or health(session)).open:
        return True
    row = _row(session, lock=True)
    state = dict(row.state) if row is not None else {}
    probe_at = _when(state.get("probe_at"))
    if probe_at is not None and probe_at > now:
        return False
    state["probe_at"] = (now + PROBE_EVERY).isoformat()
    _save(session, row, state, now)
    log.info("relay breaker half-open: one probe send")
    return True


def note_success(session: Session, *, now: dt.datetime) -> bool:
    """Record an accepted message; True when it follows failures (the relay is back: release the backlog)."""
    row = _row(session, lock=True)
    state = dict(row.state) if row is not None else {}
    recovered = int(state.get("failures", 0)) > 0
    state.update(last_success=now.isoformat(), failures=0, probe_at=None, opened_at=None)
    if recovered:
        state["released_at"] = now.isoformat()
    _save(session, row, state, now)
    if recovered:
        log.warning("relay accepted a message after failures; queued retries are brought forward")
    return recovered


def note_failure(session: Session, reason: str, *, now: dt.datetime) -> int:
    """Record a temporary failure (relay unreachable, 4xx); returns the consecutive count (OPEN_AFTER opens the breaker)."""
    row = _row(session, lock=True)
    state = dict(row.state) if row is not None else {}
    failures = int(state.get("failures", 0)) + 1
    state.update(last_failure=now.isoformat(), last_error=reason[:200], failures=failures)
    if failures == OPEN_AFTER:
        state["probe_at"] = (now + PROBE_EVERY).isoformat()
        log.warning("relay breaker open after %d failures in a row; one probe every %d s", failures, PROBE_EVERY.total_seconds())
    if failures >= OPEN_AFTER and not state.get("opened_at"):  # (a breaker opened before opened_at was kept: from now)
        state["opened_at"] = now.isoformat()
    _save(session, row, state, now)
    return failures


def note_refusal(session: Session, reason: str, *, now: dt.datetime) -> None:
    """Record a permanent refusal (5xx) as the relay's last failure, without touching the breaker (the relay answered)."""
    row = _row(session, lock=True)
    state = dict(row.state) if row is not None else {}
    state.update(last_failure=now.isoformat(), last_error=reason[:200])
    _save(session, row, state, now)


def held_until(session: Session, outbox_id: int, seen: RelayHealth, *, now: dt.datetime, limit: dt.timedelta) -> dt.datetime | None:
    """When a row that failed while the breaker is open (`seen.open`) is due again: its slot at the next probe (aware UTC).

    None once the row has waited `limit` in this outage, counted from the later of its queueing and the breaker's
    opening: then it gives up. The failure itself is not counted against the row's attempts (the relay is down).
    """
    found = session.execute(select(OutboxEmail.created_at, OutboxEmail.kind).where(OutboxEmail.id == outbox_id)).one()
    waiting_since = max(found.created_at or now, seen.opened_at or now)
    if now - waiting_since >= limit:
        return None
    return probe_slot(max(seen.probe_at or now + PROBE_EVERY, now), found.kind)


def rank_of(kind: str) -> int:
    """A kind's sending order (`kind_rank` in Python): 0 for DSR forwards, 1 for escalations, 2 for everything else."""
    return FIRST_KINDS.index(kind) if kind in FIRST_KINDS else len(FIRST_KINDS)


def probe_slot(probe_at: dt.datetime, kind: str) -> dt.datetime:
    """When a row of `kind` held for the probe at `probe_at` is due: `RANK_STAGGER` later per rank, so a forward takes the probe."""
    return probe_at + RANK_STAGGER * rank_of(kind)


def span(period: dt.timedelta) -> str:
    """`period` in words for notes and logs: "5 days", "36 hours", "90 minutes", else seconds."""
    seconds = int(period.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}{'' if seconds == size else 's'}"
    return f"{seconds} s"


def kind_rank() -> ColumnElement[int]:
    """The sending order of a row's kind as SQL: its index in FIRST_KINDS (0: DSR forwards), else after them all."""
    return case({kind: rank for rank, kind in enumerate(FIRST_KINDS)}, value=OutboxEmail.kind, else_=len(FIRST_KINDS))


def bring_forward(session: Session, *, now: dt.datetime, limit: int = 1000) -> list[int]:
    """Make every queued row due (by now); returns their ids by `kind_rank`, then due time, then id, to ring in that order.

    All queued rows waited for the relay: those due later (retry backoff, held for a probe) are made due now; those
    already due (their doorbells not yet taken: a probe's tick, a row queued during the outage) keep their earlier
    due time and are rung again with the rest, in rank order (an extra doorbell is harmless: claims are exclusive).
    """
    ids = list(
        session.scalars(select(OutboxEmail.id).where(OutboxEmail.state == "queued").order_by(kind_rank(), OutboxEmail.due_at, OutboxEmail.id).limit(limit))
    )
    if ids:
        session.execute(
            update(OutboxEmail)
            .where(OutboxEmail.id.in_(ids), OutboxEmail.state == "queued", OutboxEmail.due_at > now)
            .values(due_at=now)
            .execution_options(synchronize_session=False)
        )
    return ids


def gives_way(session: Session, outbox_id: int, seen: RelayHealth, *, now: dt.datetime) -> bool:
    """True when a due queued row should wait `ORDER_WAIT` for a higher-ranked row released with it (`kind_rank`).

    Only within `ORDER_WINDOW` of the relay's return (`seen.released_at`), and only while a row of a higher rank is
    due and queued, or claimed within the window and still being sent; so the backlog leaves in rank order, and no
    row waits more than the window (a forward whose doorbell was lost does not hold the rest back longer).
    """
    released = seen.released_at
    if released is None or not released <= now < released + ORDER_WINDOW:
        return False
    row = session.execute(select(OutboxEmail.kind, OutboxEmail.state, OutboxEmail.due_at).where(OutboxEmail.id == outbox_id)).one_or_none()
    if row is None or row.state != "queued" or row.due_at > now or rank_of(row.kind) == 0:
        return False
    ahead = select(OutboxEmail.id).where(
        OutboxEmail.kind.in_(FIRST_KINDS[: rank_of(row.kind)]),
        or_(
            (OutboxEmail.state == "queued") & (OutboxEmail.due_at <= now),
            (OutboxEmail.state == "sending") & (OutboxEmail.claimed_at > now - ORDER_WINDOW),
        ),
    )
    return session.scalar(ahead.limit(1)) is not None
