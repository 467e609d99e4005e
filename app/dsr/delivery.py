"""What the relay did with a forward: "forwarded" means the controller's relay accepted it (issue 15 item 1).

The forward writes one outbox row per DSR contact and the forward row becomes
`queued`; the request stays unforwarded (its 24-hour clock, the 4-hour
escalation and the missed-deadline marking keep running). The outbox reports
each row's outcome through the delivery hooks (`app.mail.outcomes`), and
`on_delivery` settles the forward from its rows' states:

- a row `sent` (the relay accepted it) -> the forward is `forwarded`, at the
  time of the first acceptance; the request is forwarded once every
  controller's forward is;
- a row refused for good (a 5xx, given up after its attempts, or bounced) ->
  the privacy officers are alerted at once (`alert_officers`), with the relay's
  answer and the controller's other contacts; when every contact of that
  controller is refused the forward is `refused` and the clock runs on to
  "missed" unless staff act;
- a bounce after an acceptance takes the acceptance back when no other
  contact accepted it.

`alert_officers` is the one escalation function for a notice with a deadline
that did not reach its recipient (the bounce handling calls it through the
same hook, with state "bounced").
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.auth.models import User
from app.controllers.models import CONTACT_KINDS, Controller
from app.dsr import deadlines
from app.dsr.history import add_event
from app.dsr.models import UNFORWARDED, Dsr, DsrForward
from app.mail.models import OutboxEmail
from app.mail.outbox import enqueue_email
from app.mail.outcomes import DeliveryOutcome
from app.principal import Principal

log = logging.getLogger(__name__)

DELIVERY = Principal.system("forward delivery")
FORWARD_KIND = "dsr_forward"
# Outbox states that mean "this contact will not get it" (bounced: reported by the bounce handling).
GIVEN_UP = ("failed", "refused", "bounced")


def privacy_officers(session: Session) -> list[User]:
    """The active privacy officers, who receive every escalation."""
    return list(session.scalars(select(User).where(User.role == "privacy_officer", User.disabled_at.is_(None)).order_by(User.id)))


def email_officers(session: Session, *, subject: str, body: str, related_type: str, related_id: int, msgid_domain: str, by: Principal, now: dt.datetime) -> int:
    """Queue an escalation (kind "dsr_escalation") to every active privacy officer about a request or ticket; returns how many."""
    officers = privacy_officers(session)
    for officer in officers:
        enqueue_email(
            session,
            to=officer.email,
            subject=subject,
            body_text=body,
            related_type=related_type,
            related_id=related_id,
            kind="dsr_escalation",
            msgid_domain=msgid_domain,
            by=by,
            now=now,
        )
    return len(officers)


def alert_officers(session: Session, dsr: Dsr, *, subject: str, body: str, msgid_domain: str, by: Principal, now: dt.datetime) -> int:
    """Email every privacy officer about `dsr` (neutral subject; the body may name contacts) and mark it escalated; returns how many."""
    officers = email_officers(session, subject=subject, body=body, related_type="dsr", related_id=dsr.id, msgid_domain=msgid_domain, by=by, now=now)
    # The UI banner counts escalated requests; the first escalation's time is kept.
    session.execute(update(Dsr).where(Dsr.id == dsr.id, Dsr.escalated_at.is_(None)).values(escalated_at=now).execution_options(synchronize_session=False))
    return officers


def _rows(session: Session, forward: DsrForward) -> list[OutboxEmail]:
    if not forward.outbox_ids:
        return []
    return list(session.scalars(select(OutboxEmail).where(OutboxEmail.id.in_(list(forward.outbox_ids))).order_by(OutboxEmail.id)))


def _settled_state(rows: list[OutboxEmail]) -> str:
    if any(row.state == "sent" for row in rows):
        return "forwarded"
    if rows and all(row.state in GIVEN_UP for row in rows):
        return "refused"
    return "queued"


def on_delivery(session: Session, outcome: DeliveryOutcome, *, now: dt.datetime) -> None:
    """The delivery hook: settle the forward an outbox row belongs to (flush only; in the outbox's transaction)."""
    if outcome.kind != FORWARD_KIND or outcome.related_type != "dsr" or outcome.related_id is None or outcome.controller_id is None:
        return
    # Two workers settling forwards of one request at once (two contacts, or two controllers) take turns: the request's
    # row is locked first (then its forward), so the second reads what the first committed (Postgres; SQLite's writes
    # are serial anyway) and neither overwrites the other's acceptance time.
    dsr = session.get(Dsr, outcome.related_id, populate_existing=True, with_for_update=True)
    forward = session.scalars(
        select(DsrForward)
        .where(DsrForward.dsr_id == outcome.related_id, DsrForward.controller_id == outcome.controller_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if forward is None or dsr is None or forward.state == "pending":
        return
    rows = _rows(session, forward)
    state = _settled_state(rows)
    if state == "forwarded" and forward.state != "forwarded":
        forward.state, forward.forwarded_at = "forwarded", now
        add_event(session, dsr, "forward_accepted", by=DELIVERY, now=now, controller_id=forward.controller_id, outbox_id=outcome.outbox_id)
    elif state == "forwarded" and outcome.state == "sent" and forward.forwarded_at is not None and now < forward.forwarded_at:
        forward.forwarded_at = now  # an earlier acceptance whose commit came second (two contacts sent at once)
    elif state != "forwarded" and forward.state == "forwarded":
        forward.state, forward.forwarded_at = state, None  # a bounce took the only acceptance back
    elif state != forward.state:
        forward.state = state
    session.flush()
    if outcome.state != "sent":
        _escalate_refusal(session, dsr, forward, rows, outcome, now=now)
    settle_request(session, dsr, now=now)


def _escalate_refusal(session: Session, dsr: Dsr, forward: DsrForward, rows: list[OutboxEmail], outcome: DeliveryOutcome, *, now: dt.datetime) -> None:
    """A contact will not get the forward: alert the officers at once, with the relay's answer and the other contacts."""
    controller = session.get(Controller, forward.controller_id)
    assert controller is not None
    row = next((r for r in rows if r.id == outcome.outbox_id), None)
    refused_to = (row.to_addr if row is not None else None) or "one of its DSR contacts"
    states = "\n".join(f"  {r.to_addr}: {r.state}" for r in rows)
    others = [f"  {kind}: {address}" for kind in CONTACT_KINDS for address in controller.contact_emails(kind) if address and address != refused_to]
    left = deadlines.format_left(deadlines.time_left(dsr.due_at, now))
    what = "bounced" if outcome.state == "bounced" else "was refused by the mail relay"
    body = (
        f"The forward of {dsr.reference} to {controller.name} {what}: {refused_to}.\n"
        f"The relay answered: {outcome.answer}\n\n"
        f"Each DSR contact of this controller:\n{states}\n\n"
        f"The forward is {'still delivered to another contact' if forward.state == 'forwarded' else 'not delivered'}; "
        f"the request is due at {dsr.due_at:%Y-%m-%d %H:%M} UTC ({left} left).\n"
        + ("Other contacts of the controller you could use:\n" + "\n".join(others) + "\n" if others else "The controller has no other contact on record.\n")
        + f"Open /dsr/{dsr.id} to forward it another way and record what you did.\n"
    )
    domain = str(row.message_id).strip("<>").rpartition("@")[2] if row is not None else "desk.localhost"
    officers = alert_officers(
        session, dsr, subject=f"Escalation: the forward of {dsr.reference} was not delivered", body=body, msgid_domain=domain, by=DELIVERY, now=now
    )
    add_event(
        session,
        dsr,
        "forward_refused",
        by=DELIVERY,
        now=now,
        controller_id=forward.controller_id,
        outbox_id=outcome.outbox_id,
        outcome=outcome.state,
        permanent=outcome.permanent,
        forward_state=forward.state,
        officers=officers,
    )
    log.warning("dsr %s: forward to controller %s not delivered (%s); %d privacy officer(s) alerted", dsr.id, forward.controller_id, outcome.state, officers)


def settle_request(session: Session, dsr: Dsr, *, now: dt.datetime) -> None:
    """The request is forwarded once every controller's forward is (at the last first acceptance); taken back when one no longer is."""
    session.refresh(dsr)
    if dsr.forwards and all(f.state == "forwarded" for f in dsr.forwards):
        last = max(f.forwarded_at or now for f in dsr.forwards)
        if dsr.forwarded_at != last:
            dsr.forwarded_at = last
            dsr.forward_seconds = int((last - dsr.received_at).total_seconds())
            if dsr.state == "awaiting_forward":
                dsr.state = "forwarded"
            dsr.updated_at = now
    elif dsr.forwarded_at is not None and dsr.state in ("awaiting_forward", "forwarded"):
        dsr.forwarded_at, dsr.forward_seconds = None, None
        dsr.state, dsr.updated_at = "awaiting_forward", now
    session.flush()


def oldest_undelivered(session: Session) -> tuple[dt.datetime, str] | None:
    """The deadline and state of the open request due first that no controller's relay has accepted yet (None: none); one indexed MIN per state."""
    found: list[tuple[dt.datetime, str]] = []
    for state in UNFORWARDED:
        due = session.scalar(select(func.min(Dsr.due_at)).where(Dsr.state == state))
        if due is not None:
            found.append((due if due.tzinfo else due.replace(tzinfo=dt.UTC), state))
    return min(found) if found else None
