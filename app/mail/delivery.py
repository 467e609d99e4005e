"""The transactional outbox, send side: claim a row, ask the outbound policies again, send, record.

Exactly-once, as far as SMTP allows: a worker claims a row with a conditional UPDATE (queued -> sending), so two
workers never both send it. A worker that dies mid-send leaves the row in `sending` with its claim time; once the
claim is older than `stale_after` (longer than the actor's time limit, so its owner is surely gone) the sweeper
re-sends it with the same Message-ID and the row records `delivery_note = 'resent after stale claim'`. Residual risk:
if the worker died after the SMTP server accepted the message but before the row was marked sent, the recipient gets
two copies with one Message-ID (most receivers and mail clients collapse them). The file outbox has no such window:
the `.eml` file named after the Message-ID is the proof of delivery.

Every claim (the first try, a retry after backoff, a requeue by an operator, a resend after a stale claim) asks the
registered outbound policies again in the claim's transaction (`app.mail.policies`): an email allowed when it was
queued but no longer allowed (the requester opened a data-subject request meanwhile) ends `refused`, is never sent,
and the refusal is audit-logged with the state change.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

from sqlalchemy import event, or_, select, update
from sqlalchemy.orm import Session

from app.audit.service import record
from app.crypto.cipher import CryptoError
from app.exceptions import Conflict, NotFound
from app.jobs.batch import Clock, SessionScope, in_transaction
from app.mail import policies, relay
from app.mail.dsn import return_path
from app.mail.models import OutboxEmail
from app.mail.outbox import OutboxError, build_message, ring_after_commit, ring_doorbell
from app.mail.outbox_settings import OutboundSettings, OutboxTiming
from app.mail.outcomes import HOOKS, DeliveryOutcome, OutcomeState
from app.mail.transport import DeliveryFailure, PermanentFailure, SendResult, TemporaryFailure
from app.principal import Principal

log = logging.getLogger(__name__)

OUTBOX = Principal.system("outbox")
Outcome = Literal["sent", "queued", "failed", "refused", "skipped"]


@dataclass(frozen=True)
class Claim:
    """This worker's exclusive right to send one row (until it goes stale)."""

    outbox_id: int
    token: str
    message_id: str
    attempt: int
    after_stale_claim: bool


def claim(session: Session, outbox_id: int, *, now: dt.datetime, timing: OutboxTiming) -> Claim | None:
    """Take a due row for sending (queued -> sending) with a conditional UPDATE; None when not ours to send.

    Sending goes through `deliver`, which asks the outbound policies about the
    claimed row in the same transaction, before anything leaves.
    """
    row = session.get(OutboxEmail, outbox_id, populate_existing=True)
    if row is None or row.state in ("sent", "failed", "refused"):
        return None
    if row.state == "queued" and row.due_at > now:
        return None
    stale = row.state == "sending"
    if stale and (row.claimed_at is None or row.claimed_at > now - timing.stale_after):
        return None  # another worker holds a live claim
    guard = [
        OutboxEmail.id == row.id,
        OutboxEmail.state == row.state,
        OutboxEmail.attempts == row.attempts,
        OutboxEmail.claim_token.is_(None) if row.claim_token is None else OutboxEmail.claim_token == row.claim_token,
    ]
    if row.attempts >= timing.max_attempts:
        session.execute(
            update(OutboxEmail)
            .where(*guard)
            .values(state="failed", claim_token=None, updated_at=now, delivery_note=f"gave up after {row.attempts} attempts"[:200])
            .execution_options(synchronize_session=False)
        )
        session.flush()
        log.warning("outbox %s failed: gave up after %s attempts", row.id, row.attempts)
        return None
    token = secrets.token_hex(16)
    result = session.execute(
        update(OutboxEmail)
        .where(*guard)
        .values(
            state="sending",
            claim_token=token,
            claimed_at=now,
            attempts=row.attempts + 1,
            updated_at=now,
            delivery_note="resent after stale claim" if stale else row.delivery_note,
            stale_claims=OutboxEmail.stale_claims + (1 if stale else 0),
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return None  # another worker won the race
    if stale:
        log.warning("outbox %s: claim went stale; sending again with the same Message-ID", row.id)
    return Claim(outbox_id=row.id, token=token, message_id=row.message_id or "", attempt=row.attempts + 1, after_stale_claim=stale)


def refuse_if_disallowed(session: Session, won: Claim, row: OutboxEmail, *, now: dt.datetime) -> list[policies.Refusal]:
    """Ask the outbound policies about the claimed row; if any refuses, mark it refused and audit it (flush only).

    Returns the refusals (empty: the row may be sent). Reads the recipient and
    body (CryptoError if the controller's key was shredded). The audit events
    carry ids and reason codes only.
    """
    message = policies.OutboundMessage(
        to=row.to_addr or "",
        kind=row.kind,
        body_text=row.body_text or "",
        related_type=row.related_type,
        related_id=row.related_id,
        controller_id=row.controller_id,
        outbox_id=row.id,
    )
    found = policies.POLICIES.refusals(session, message, now=now)
    if not found:
        return found
    first = found[0]
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == won.outbox_id, OutboxEmail.state == "sending", OutboxEmail.claim_token == won.token)
        .values(state="refused", claim_token=None, claimed_at=None, updated_at=now, delivery_note=f"refused by {first.policy} ({first.reason})"[:200])
        .execution_options(synchronize_session=False)
    )
    record(
        session,
        by=OUTBOX,
        action="outbox.refused",
        target_type="outbox_email",
        target_id=won.outbox_id,
        controller_id=row.controller_id,
        details={
            "policies": [r.policy for r in found],
            "reasons": [r.reason for r in found],
            "attempt": won.attempt,
            "stale_claim": won.after_stale_claim,
        },
        now=now,
    )
    for refusal in found:
        policies.audit_refusal(session, refusal, by=OUTBOX, now=now, extra={"outbox_id": won.outbox_id, "at_claim": True})
    log.warning("outbox %s refused at claim by %s (%s); not sent", won.outbox_id, ", ".join(r.policy for r in found), first.reason)
    notify(session, won.outbox_id, "refused", f"refused by {first.policy} ({first.reason})", now=now)
    return found


def notify(session: Session, outbox_id: int, state: OutcomeState, answer: str, *, now: dt.datetime, permanent: bool = False) -> None:
    """Tell the owning domain what became of the row (`app.mail.outcomes.HOOKS`), in the caller's transaction."""
    row = session.execute(
        select(OutboxEmail.kind, OutboxEmail.related_type, OutboxEmail.related_id, OutboxEmail.controller_id).where(OutboxEmail.id == outbox_id)
    ).one()
    outcome = DeliveryOutcome(
        outbox_id=outbox_id,
        kind=row.kind,
        state=state,
        answer=answer[:500],
        related_type=row.related_type,
        related_id=row.related_id,
        controller_id=row.controller_id,
        permanent=permanent,
    )
    HOOKS.notify(session, outcome, now=now)


def record_sent(session: Session, won: Claim, result: SendResult, *, now: dt.datetime) -> bool:
    """Mark the claimed row sent (its last error cleared: the audit's `outbox.retry` events keep the history); False if
    the claim was taken over meanwhile (a possible duplicate, noted)."""
    failed_before = session.scalar(select(OutboxEmail.last_error).where(OutboxEmail.id == won.outbox_id)) is not None
    if result.already_delivered:
        note = "found already delivered after stale claim; not sent again"
    elif won.after_stale_claim:
        note = "resent after stale claim"
    elif won.attempt > 1:
        note = f"sent on attempt {won.attempt} after temporary failures"
    else:  # failures while the relay was down are not counted as attempts
        note = "sent after earlier failures" if failed_before else "sent on first attempt"
    done = session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == won.outbox_id, OutboxEmail.state == "sending", OutboxEmail.claim_token == won.token)
        .values(state="sent", sent_at=now, smtp_response=result.response[:500], delivery_note=note, last_error=None, claim_token=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(done, "rowcount", 0) == 1:
        notify(session, won.outbox_id, "sent", result.response, now=now)
        return True
    # Our claim went stale and another worker took the row over: both may have sent it.
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == won.outbox_id)
        .values(delivery_note="possible duplicate: a stale claim also completed its send", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    log.warning("outbox %s: sent by a worker whose claim had been taken over; possible duplicate", won.outbox_id)
    return False


def record_failure(
    session: Session, won: Claim, failure: DeliveryFailure, *, now: dt.datetime, timing: OutboxTiming, outage: relay.RelayHealth | None = None
) -> Literal["queued", "failed"]:
    """After a failed attempt: back to queued (a doorbell rung after commit), or failed for good. Returns the new state.

    Closed breaker: retry after backoff, give up after `timing.max_attempts`. `outage` (the breaker is open, or
    this failure opened it): the relay is down, not the row, so the attempt is not counted and the row is due at
    the next probe; it gives up only after waiting `timing.outage_give_up` in the outage (`relay.held_until`).
    """
    values: dict[str, Any] = {"last_error": failure.reason[:500], "claim_token": None, "claimed_at": None, "updated_at": now}
    held = relay.held_until(session, won.outbox_id, outage, now=now, limit=timing.outage_give_up) if outage and not failure.permanent else None
    if held is not None:
        values.update(state="queued", due_at=held, attempts=won.attempt - 1)
    elif failure.permanent or outage or won.attempt >= timing.max_attempts:
        waited = f"gave up after waiting {relay.span(timing.outage_give_up)} for the relay" if outage else f"gave up after {won.attempt} attempts"
        values.update(state="failed", delivery_note="refused permanently" if failure.permanent else waited)
    else:
        values.update(state="queued", due_at=now + timing.retry_delay(won.attempt))
    state: Literal["queued", "failed"] = values["state"]
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == won.outbox_id, OutboxEmail.state == "sending", OutboxEmail.claim_token == won.token)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    log.log(logging.INFO if held else logging.WARNING, "outbox %s attempt %s failed (%s): %s", won.outbox_id, won.attempt, state, failure.reason)
    row_controller = session.scalar(select(OutboxEmail.controller_id).where(OutboxEmail.id == won.outbox_id))
    details: dict[str, Any] = {"attempt": won.attempt} | ({"relay_down": True} if outage else {})
    action = "outbox.failed" if state == "failed" else "outbox.retry"
    record(session, by=OUTBOX, action=action, target_type="outbox_email", target_id=won.outbox_id, controller_id=row_controller, details=details, now=now)
    if state == "failed":
        notify(session, won.outbox_id, "failed", failure.reason, now=now, permanent=failure.permanent)
    else:  # rung after the caller's scope commits; a lost doorbell is covered by the sweeper
        session.info.setdefault(_RETRY_KEY, []).append((won.outbox_id, values["due_at"] - now))
    return state


@dataclass(frozen=True)
class _Taken:
    won: Claim
    message: EmailMessage
    recipient: str


def deliver(sessions: SessionScope, outbox_id: int, *, settings: OutboundSettings, clock: Clock) -> Outcome:
    """Send one outbox row if it is due, unclaimed and still allowed: claim and vet (commit), send, record (commit).

    The batch-job shape (`app.jobs.batch`): each step is a transaction of
    `sessions` at `clock()`, committed before the next, so a crash mid-send
    leaves a visible `sending` claim instead of a rolled-back nothing.
    Returns what became of the row ("skipped": not due, not ours, or already done; "queued": it waits, rung again).
    """
    taken = in_transaction(sessions, lambda session, now: _take(session, outbox_id, settings, now), clock=clock)
    if not isinstance(taken, _Taken):
        return taken
    won = taken.won
    try:
        # VERP: the envelope sender names the row, so a bounce finds it even without the original's headers (app.mail.bounces).
        envelope = return_path(settings.sender, str(taken.message["Message-ID"]))
        result = settings.transport.send(taken.message, sender=envelope, recipient=taken.recipient)
    except DeliveryFailure as exc:
        failure = exc
        return in_transaction(sessions, lambda session, now: _relay_failed(session, won, failure, settings, now), clock=clock)
    in_transaction(sessions, lambda session, now: _sent(session, won, result, now), clock=clock)
    return "sent"


def _sent(session: Session, won: Claim, result: SendResult, now: dt.datetime) -> None:
    """Record the relay's acceptance; after failures, release every queued row, rung by `relay.kind_rank` (DSR forwards first)."""
    record_sent(session, won, result, now=now)
    if relay.note_success(session, now=now):
        for outbox_id in relay.bring_forward(session, now=now):
            session.info.setdefault(_RETRY_KEY, []).append((outbox_id, dt.timedelta(0)))


def _take(session: Session, outbox_id: int, settings: OutboundSettings, now: dt.datetime) -> _Taken | Outcome:
    """Claim the row and decide: send it (the message to send), or what became of it."""
    seen = relay.health(session)
    if relay.gives_way(session, outbox_id, seen, now=now):  # just after the relay's return: higher-ranked mail first
        session.info.setdefault(_RETRY_KEY, []).append((outbox_id, relay.ORDER_WAIT))
        return "queued"
    won = claim(session, outbox_id, now=now, timing=settings.timing)
    if won is None:
        return "skipped"
    if won.after_stale_claim and settings.transport.already_delivered(won.message_id):
        # It left before the worker died (the file outbox knows): record that, whatever a policy says now.
        record_sent(session, won, SendResult(response="already delivered before the stale claim", already_delivered=True), now=now)
        return "sent"
    row = session.get(OutboxEmail, outbox_id, populate_existing=True)
    assert row is not None
    try:
        message = build_message(row, sender=settings.sender)
    except (ValueError, TypeError, CryptoError) as exc:
        # CryptoError: the controller's key was shredded; the mail can never be sent.
        return record_failure(session, won, PermanentFailure(f"the message could not be built ({type(exc).__name__})"), now=now, timing=settings.timing)
    if refuse_if_disallowed(session, won, row, now=now):
        return "refused"
    if not relay.may_send(session, now=now, seen=seen):
        return _defer(session, won, row.kind, now, settings.timing)
    return _Taken(won, message, str(message["To"]))


def _defer(session: Session, won: Claim, kind: str, now: dt.datetime, timing: OutboxTiming) -> Outcome:
    """The breaker is open: put the row back until its slot at the next probe (`relay.probe_slot`), the attempt not counted;
    a row that has waited out `timing.outage_give_up` fails now (its owner told), not when its turn to probe comes."""
    seen = relay.health(session)
    if relay.held_until(session, won.outbox_id, seen, now=now, limit=timing.outage_give_up) is None:
        return record_failure(session, won, TemporaryFailure(seen.last_error or "the relay stayed down"), now=now, timing=timing, outage=seen)
    probe_at = relay.probe_slot(seen.probe_at or now + relay.PROBE_EVERY, kind)
    session.execute(
        update(OutboxEmail)
        .where(OutboxEmail.id == won.outbox_id, OutboxEmail.state == "sending", OutboxEmail.claim_token == won.token)
        .values(state="queued", attempts=won.attempt - 1, due_at=probe_at, claim_token=None, claimed_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.info.setdefault(_RETRY_KEY, []).append((won.outbox_id, probe_at - now))
    return "queued"


def _relay_failed(session: Session, won: Claim, failure: DeliveryFailure, settings: OutboundSettings, now: dt.datetime) -> Outcome:
    # A 5xx is the relay answering (it neither opens nor closes the breaker); anything else counts against it.
    if failure.permanent:
        relay.note_refusal(session, failure.reason, now=now)
        return record_failure(session, won, failure, now=now, timing=settings.timing)
    relay.note_failure(session, failure.reason, now=now)
    seen = relay.health(session)  # open: a failed probe, or this failure opened it (an outage, not this row's fault)
    return record_failure(session, won, failure, now=now, timing=settings.timing, outage=seen if seen.open else None)


_RETRY_KEY = "outbox_retry_doorbells"


@event.listens_for(Session, "after_commit")
def _ring_retries_after_commit(session: Session) -> None:
    for outbox_id, delay in session.info.pop(_RETRY_KEY, None) or ():
        ring_doorbell([outbox_id], delay=delay)


# --- requeue, sweeper and figures -------------------------------------------------


class OutboxEmailNotFound(OutboxError, NotFound):
    """No outbox row with that id."""


class NotRequeueable(OutboxError, Conflict):
    """Only a failed email can be queued again (a refused one never); the message says its state."""


def requeue(session: Session, outbox_id: int, *, by: Principal, now: dt.datetime) -> OutboxEmail:
    """Give a failed email a fresh set of attempts (after the cause is fixed); same Message-ID, audit-logged.

    The policies are asked again when a worker claims it, so a requeue never
    sends what is no longer allowed.
    """
    row = session.get(OutboxEmail, outbox_id)
    if row is None:
        raise OutboxEmailNotFound(f"no outbox email {outbox_id}")
    if row.state != "failed":
        raise NotRequeueable(f"outbox email {outbox_id} is {row.state}, not failed")
    row.state, row.attempts, row.due_at, row.updated_at = "queued", 0, now, now
    row.delivery_note = "requeued by an operator after failing"
    session.flush()
    record(session, by=by, action="outbox.requeued", target_type="outbox_email", target_id=row.id, controller_id=row.controller_id, now=now)
    ring_after_commit(session, [row.id])
    return row


def due_for_delivery(session: Session, *, now: dt.datetime, timing: OutboxTiming, limit: int = 1000) -> list[int]:
    """Ids of rows a worker should look at: queued and due, or sending with a stale claim."""
    stmt = (
        select(OutboxEmail.id)
        .where(
            or_(
                (OutboxEmail.state == "queued") & (OutboxEmail.due_at <= now),
                (OutboxEmail.state == "sending") & (OutboxEmail.claimed_at <= now - timing.stale_after),
            )
        )
        .order_by(relay.kind_rank(), OutboxEmail.due_at, OutboxEmail.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def sweep(session: Session, *, now: dt.datetime, timing: OutboxTiming) -> tuple[int, int]:
    """Ring the doorbell for every due row; returns (rows due, doorbells rung). Reads only."""
    ids = due_for_delivery(session, now=now, timing=timing)
    return len(ids), ring_doorbell(ids) if ids else 0
