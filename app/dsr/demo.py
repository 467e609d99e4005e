"""Demo data-subject requests: one in every state, some close to (or past) their deadline, and 12 weeks of history for the chart."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.controllers.models import Controller
from app.dsr import deadlines
from app.dsr import forward as dsr_forward
from app.dsr import instructions as dsr_instructions
from app.dsr.closing import close_dsr
from app.dsr.models import Dsr, DsrEvent, DsrForward
from app.dsr.requests import DsrInput, create_from_ticket, format_reference
from app.dsr.settings import DsrSettings
from app.dsr.sweeper import record_missed_reason, sweep
from app.mail import delivery as mail_delivery
from app.mail.models import OutboxEmail
from app.principal import Principal
from app.tickets import service as tickets

SETTINGS = DsrSettings(privacy_address="privacy@desk.example", msgid_domain="desk.example")

# (label, controller name or None for triage, hours since the subject wrote, types, what happens next)
LIVE = [
    ("triage, fresh", None, 2, ["access"], "none"),
    ("triage, 3 h left (escalated)", None, 21, ["erasure"], "none"),
    ("triage, deadline missed, reason missing", None, 27, ["rectification"], "none"),
    ("triage, deadline missed, reason recorded", None, 30, ["objection"], "reason"),
    ("awaiting forward", "Pexgle Kft.", 0.2, ["access", "portability"], "none"),
    ("forwarded", "WECO Retail GmbH", 5, ["erasure"], "forward"),
    ("forwarded, instruction pending", "Nordlicht Reisen AG", 30, ["access"], "instruction"),
    ("instructed", "Atlas Insurance Ltd", 50, ["erasure", "restriction"], "confirmed"),
    ("closed", "Bistro Verde S.r.l.", 200, ["access"], "closed"),
]
SUBJECTS = ["anna.kovacs", "jonas.weber", "marie.dubois", "peter.nagy", "lena.fischer", "tom.baker", "eva.szabo", "luc.martin", "ida.berg"]


def _ticket(session: Session, controller_id: int | None, email: str, name: str, at: dt.datetime, text: str, by: Principal) -> tickets.Ticket:
    ticket = tickets.create_ticket(session, controller_id=controller_id, requester_name=name, requester_email=email, subject="My personal data", by=by, now=at)
    tickets.add_message(
        session,
        ticket,
        tickets.MessageInput(direction="inbound", sender_name=name, sender_email=email, subject="My personal data", body_text=text),
        by=by,
        now=at,
    )
    return ticket


def seed(session: Session, *, now: dt.datetime) -> Iterator[str]:
    """Create the demo requests unless some exist; yields one line per request."""
    if session.scalar(select(func.count()).select_from(Dsr)):
        return
    by = Principal.system("demo seed")
    ids = {name: cid for name, cid in session.execute(select(Controller.name, Controller.id))}
    for (label, controller, hours, types, then), local in zip(LIVE, SUBJECTS, strict=True):
        at = now - dt.timedelta(hours=hours)
        name = local.replace(".", " ").title()
        email = f"{local}@mail.example"
        cid = ids.get(controller) if controller else None
        ticket = _ticket(session, cid, email, name, at, f"Hello, under the GDPR I would like to exercise my right ({', '.join(types)}).", by)
        data = DsrInput(types=types, subject_email=email, subject_name=name, request_text=f"The subject asks for {' and '.join(types)} of their personal data.")
        dsr = create_from_ticket(
            session, ticket.id, data, controller_ids=[cid] if cid else None, by=by, now=now if then == "none" else at + dt.timedelta(minutes=1)
        )
        if then in ("forward", "instruction", "confirmed", "closed"):
            dsr_forward.forward(session, dsr.id, settings=SETTINGS, by=by, now=at + dt.timedelta(minutes=3))
            # "Forwarded" means the relay accepted it: the demo's forwards are marked sent (nothing leaves).
            accept_forwards(session, dsr.id, at=at + dt.timedelta(minutes=4), answer="demo seed: not sent")
        if then in ("instruction", "confirmed", "closed") and cid is not None:
            contact = session.get_one(Controller, cid).contact_emails("dsr")[0]
            item = dsr_instructions.receive(
                session, dsr, controller_id=cid, sender_email=contact, reply_text="Please confirm to the subject that we will handle it.",
                raw=b"demo", raw_sha256="0" * 64, message_pk=None, by=by, now=at + dt.timedelta(hours=3),
            )  # fmt: skip
            if then in ("confirmed", "closed"):
                dsr_instructions.confirm(session, dsr.id, item.id, "erase" if "erasure" in types else "no_action", by=by, now=at + dt.timedelta(hours=4))
        if then == "closed":
            close_dsr(session, dsr.id, "completed", by=by, now=at + dt.timedelta(hours=48))
        if then == "reason":
            sweep(session, settings=SETTINGS, by=by, now=now)
            record_missed_reason(session, dsr.id, "Two controllers claimed the subject over a holiday weekend.", by=by, now=now)
        yield f"DSR {dsr.reference}: {label}"
    yield f"DSR history: {_history(session, ids, now=now, by=by)} closed requests over 12 weeks (for the chart)"
    sweep(session, settings=SETTINGS, by=by, now=now)


def accept_forwards(session: Session, dsr_id: int, *, at: dt.datetime, answer: str) -> None:
    """Mark every queued forward row of a request sent with `answer` and report it, as the outbox does when the relay accepts.

    For the demo (whose forwards never leave) and tests without SMTP; nothing is sent.
    """
    for fwd in session.scalars(select(DsrForward).where(DsrForward.dsr_id == dsr_id)):
        for outbox_id in fwd.outbox_ids:
            values = {"state": "sent", "sent_at": at, "smtp_response": answer, "updated_at": at}
            session.execute(update(OutboxEmail).where(OutboxEmail.id == outbox_id).values(**values))
            mail_delivery.notify(session, outbox_id, "sent", answer, now=at)


def _history(session: Session, ids: dict[str, int], *, now: dt.datetime, by: Principal) -> int:
    # Plain rows, no emails: closed requests only there to give the 12-week chart a shape.
    rng = random.Random(6)
    controller_ids = sorted(ids.values())
    count = 0
    for week in range(1, 12):
        for _ in range(rng.randint(2, 7)):
            received = now - dt.timedelta(weeks=week, hours=rng.randint(0, 160))
            took = dt.timedelta(minutes=rng.choice([4, 15, 60, 180, 600, 1300]))
            dsr = Dsr(
                types=[rng.choice(["access", "erasure", "rectification"])], state="closed", is_open=False, source="privacy_address",
                received_at=received, due_at=deadlines.due_at(received), forwarded_at=received + took,
                forward_seconds=int(took.total_seconds()),
                closed_at=received + took + dt.timedelta(days=3), outcome="completed", created_at=received, updated_at=received + took,
            )  # fmt: skip
            session.add(dsr)
            session.flush()
            dsr.reference = format_reference(received, dsr.id)
            cid = rng.choice(controller_ids)
            session.add(DsrForward(dsr_id=dsr.id, controller_id=cid, state="forwarded", forwarded_at=received + took, outbox_ids=[], created_at=received))
            session.add(DsrEvent(dsr_id=dsr.id, at=received, code="demo_history", by_label=by.label, details={}))
            count += 1
    session.flush()
    return count
