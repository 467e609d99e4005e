"""The real-world mail cases of issue 11 (tests/mail/cases, copied from shared/cases/mail): each file with its expected outcome.

Set-up as the cases' README says: PRIVACY_ADDRESS privacy@desk.example, SUPPORT_ADDRESS support@desk.example,
a controller "Acme" (acme.example, DSR contact dpo@acme.example) with a standing instruction that allows a
neutral acknowledgement. A `NN-name.seed1.eml` is ingested first; placeholders are filled from the database.
"""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.controllers.models import Controller
from app.dsr import instructions as dsr_instructions
from app.dsr.models import Dsr
from app.mail.inbound import IngestOutcome, IngestSettings, ingest_message
from app.mail.models import OutboxEmail
from app.tickets.models import Attachment, Message, Ticket
from tests import factories
from tests.factories import TEST_PRINCIPAL, make_controller

CASES = Path(__file__).parent / "cases"
SETTINGS = IngestSettings(support_address="support@desk.example", privacy_address="privacy@desk.example")
NOW = dt.datetime(2026, 11, 30, 10, 5, tzinfo=dt.UTC)
ACK = "We have received your request and passed it to the company responsible for your data."


def acme(session: Session) -> Controller:
    """The controller the cases assume, with its standing acknowledgement instruction."""
    controller = make_controller(session, name="Acme", domains=["acme.example"], dsr_contacts=["dpo@acme.example"])
    if "source_instruction_id" in inspect.signature(dsr_instructions.record_standing).parameters:
        # A standing instruction must come from a verified reply of the controller (issue 12 item 2); the reply's own
        # request is a staff one, so the requests counted here are those mail opened (source privacy_address).
        factories.make_standing(session, controller, now=NOW)  # type: ignore[attr-defined]
    else:
        dsr_instructions.record_standing(session, controller.id, ACK, by=TEST_PRINCIPAL, now=NOW)
    return controller


def mail_requests(session: Session) -> list[Dsr]:
    """The requests that mail opened (not the standing instruction's own)."""
    return list(session.scalars(select(Dsr).where(Dsr.source == "privacy_address").order_by(Dsr.id)))


def fill(session: Session, raw: bytes) -> bytes:
    """The README's placeholders, from the database."""
    first_outbox = session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).first()
    first_ticket = session.scalars(select(Ticket).order_by(Ticket.id)).first()
    if first_outbox is not None:
        raw = raw.replace(b"@@OUTBOX1@@", first_outbox.message_id.strip("<>").encode())
    if first_ticket is not None:
        raw = raw.replace(b"@@REF1@@", (first_ticket.reference or "").encode()).replace(b"@@TOKEN1@@", first_ticket.reply_token.encode())
    return raw


def run_case(session: Session, name: str, settings: IngestSettings = SETTINGS) -> IngestOutcome:
    """Ingest the case's seed (if any), then the case itself; returns the case's outcome."""
    acme(session)
    seed = CASES / f"{name}.seed1.eml"
    if seed.exists():
        ingest_message(session, seed.read_bytes(), settings=settings, by=TEST_PRINCIPAL, now=NOW)
    raw = fill(session, (CASES / f"{name}.eml").read_bytes())
    return ingest_message(session, raw, settings=settings, by=TEST_PRINCIPAL, now=NOW + dt.timedelta(minutes=5))


def count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_03_a_reused_message_id_with_other_content_is_stored_and_noted(session: Session) -> None:
    outcome = run_case(session, "03-reused-message-id")
    assert outcome.status == "stored" and outcome.exit_code == 0
    message = session.get(Message, outcome.message_pk)
    assert message is not None and message.body_text is not None and "Shipment 5902" in message.body_text
    assert any(n.get("code") == "reused_message_id" for n in message.notes or [])
    # Joined to the thread of the first message with that id, not a new ticket
    assert not outcome.new_ticket and count(session, Ticket) == 1
    # Identical bytes stay a no-op
    again = ingest_message(session, (CASES / "03-reused-message-id.eml").read_bytes(), settings=SETTINGS, by=TEST_PRINCIPAL, now=NOW)
    assert again.status == "duplicate" and count(session, Message) == 2


def test_08_another_helpdesks_acknowledgement_of_ours_joins_the_ticket_and_sends_nothing(session: Session) -> None:
    outcome = run_case(session, "08-helpdesk-loop")
    assert outcome.status == "stored" and not outcome.new_ticket and outcome.ticket_id == 1 or outcome.ticket_id == session.scalar(select(func.min(Ticket.id)))
    assert len(mail_requests(session)) == 1
    assert session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.kind == "acknowledgement")) == 1


def test_09_a_dsn_marks_the_outbox_row_bounced_and_opens_no_ticket(session: Session) -> None:
    outcome = run_case(session, "09-bounce-dsn-null-sender")
    assert outcome.status == "bounce" and outcome.exit_code == 0
    assert count(session, Ticket) == 1 and count(session, Attachment) == 0
    ack = session.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).first()
    assert ack is not None and ack.state == "bounced"
    assert ack.bounce_status == "5.2.2" and ack.bounce_diagnostic is not None and "mailbox full" in ack.bounce_diagnostic


def test_11_gb2312_is_decoded_as_gb18030(session: Session) -> None:
    outcome = run_case(session, "11-gb2312-with-gbk-chars")
    message = session.get(Message, outcome.message_pk)
    assert message is not None and message.body_text is not None
    # 镕 is in GBK/GB18030 but not in GB2312: the label lies, as browsers assume
    assert message.body_text.strip() == "您好，朱镕基路的仓库账户被锁定了，请帮忙处理。"
    assert message.subject == "账户被锁定"


def test_14_raw_utf8_headers_are_stored_decoded(session: Session) -> None:
    outcome = run_case(session, "14-raw-utf8-headers")
    assert outcome.status == "stored" and outcome.exit_code == 0
    ticket = session.get(Ticket, outcome.ticket_id)
    assert ticket is not None and ticket.subject == "Frage zur Rückerstattung – Bestellung 5521"
    assert ticket.requester_name == "Zoë Ærøskøbing"


def test_17_a_calendar_invite_is_an_ics_attachment_and_the_ticket_says_so(session: Session) -> None:
    outcome = run_case(session, "17-calendar-only")
    message = session.get(Message, outcome.message_pk)
    assert message is not None
    [attachment] = message.attachments
    assert attachment.filename == "invitation.ics" and attachment.content_type == "text/calendar"
    assert message.body_text is not None and "Invitation: Onboarding call" in message.body_text and "2026-12-02 14:00" in message.body_text


def test_19_cid_images_are_rewritten_to_the_stored_attachment(session: Session) -> None:
    outcome = run_case(session, "19-cid-inline-image")
    message = session.get(Message, outcome.message_pk)
    assert message is not None and message.body_html is not None
    [image] = message.attachments
    assert 'src="cid:' not in message.body_html
    assert f"/attachments/{image.id}" in message.body_html


def test_23_format_flowed_with_delsp_is_unwrapped(session: Session) -> None:
    outcome = run_case(session, "23-format-flowed-delsp")
    message = session.get(Message, outcome.message_pk)
    assert message is not None and message.body_text is not None
    assert "https://files.acme.example/exports/2026/november/daily.csv" in message.body_text
    assert "supercalifragilistic" in message.body_text


def test_31_the_subjects_reply_to_our_acknowledgement_joins_the_requests_ticket(session: Session) -> None:
    outcome = run_case(session, "31-reply-to-ack")
    [dsr] = mail_requests(session)
    assert outcome.status == "stored" and not outcome.new_ticket and outcome.ticket_id == dsr.ticket_id
    assert session.scalar(select(func.count()).select_from(OutboxEmail).where(OutboxEmail.kind == "acknowledgement")) == 1
    message = session.get(Message, outcome.message_pk)
    assert message is not None and message.reply_text == "Thanks. Please also delete the old invoices with my name."


@pytest.mark.parametrize("name", sorted(p.name for p in CASES.glob("*.eml") if ".seed" not in p.name))
def test_every_case_file_has_a_test(name: str) -> None:
    stem = name.removesuffix(".eml")
    number = stem.split("-", 1)[0]
    assert any(t.startswith(f"test_{number}_") for t in globals()), f"no test for {name}"
