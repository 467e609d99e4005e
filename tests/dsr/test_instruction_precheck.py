"""The instruction handler's precheck: while no forward was ever sent no message answers one, so the ingest, reading that
beside its duplicate lookup, asks no statement of `claim_instruction`; once a forward is sent a reply to it is an instruction."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.dsr import forward as dsr_forward
from app.dsr.intake import ANY_FORWARD_SENT
from app.dsr.models import Dsr, Instruction
from app.dsr.settings import DsrSettings
from app.mail.inbound import IngestOutcome, IngestSettings, ingest_message
from app.mail.intake import REGISTRY
from app.mail.models import OutboxEmail
from tests.dsr.test_dsr_intake import mail
from tests.factories import TEST_PRINCIPAL, make_controller

SETTINGS = IngestSettings(support_address="privacy@desk.example")
NOW = dt.datetime(2026, 11, 20, 23, 50, tzinfo=dt.UTC)


def _ingest(session: Session, raw: bytes, at: dt.datetime) -> tuple[IngestOutcome, list[str]]:
    seen: list[str] = []
    listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: seen.append(a[2]))
    try:
        outcome = ingest_message(session, raw, settings=SETTINGS, by=TEST_PRINCIPAL, now=at)
    finally:
        event.remove(session.connection(), "before_cursor_execute", listen)
    return outcome, seen


def test_no_forward_sent_no_lookup_of_one_then_a_reply_to_a_sent_forward_is_an_instruction(session: Session) -> None:
    # Given a request from a controller's domain, not yet forwarded: the precheck is registered and reads false
    make_controller(session, domains=["kimcorp9.example"], dsr_contacts=["dpo@kimcorp9.example"])
    assert "dsr.instruction" in REGISTRY.prechecks()
    outcome, _ = _ingest(session, mail("privacy@desk.example", "Delete my data.", msgid="p1@kimcorp9.example", sender="kim@kimcorp9.example"), NOW)
    dsr = session.scalars(select(Dsr).where(Dsr.ticket_id == outcome.ticket_id)).one()
    assert session.scalar(select(ANY_FORWARD_SENT)) is False
    # When the subject replies to their own message: no statement looks for a forward it might answer
    again = mail(
        "privacy@desk.example", "Any news?", msgid="p2@kimcorp9.example", sender="kim@kimcorp9.example", extra="In-Reply-To: <p1@kimcorp9.example>\r\n"
    )
    _, seen = _ingest(session, again, NOW + dt.timedelta(minutes=5))
    naming = [s for s in seen if "dsr_forwards" in s]
    assert len(naming) == 1 and "message_id_bidx" in naming[0] and "ticket_messages" in naming[0], naming  # the lookup's precheck only
    # Once the forward is sent the precheck reads true, and the controller's reply to it becomes an instruction
    dsr_forward.forward(session, dsr.id, settings=DsrSettings("privacy@desk.example", "desk.example"), by=TEST_PRINCIPAL, now=NOW)
    assert session.scalar(select(ANY_FORWARD_SENT)) is True
    sent = session.scalars(select(OutboxEmail).where(OutboxEmail.related_id == dsr.id, OutboxEmail.kind == "dsr_forward")).one()
    reply = mail("privacy@desk.example", "Erase it.", msgid="p3@kimcorp9.example", sender="dpo@kimcorp9.example", extra=f"References: {sent.message_id}\r\n")
    _ingest(session, reply, NOW + dt.timedelta(hours=1))
    assert session.scalars(select(Instruction.state).where(Instruction.dsr_id == dsr.id)).all() == ["pending"]
