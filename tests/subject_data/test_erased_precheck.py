"""The erased-subject observer's precheck: false until somebody is marked erased, so the ingest that reads it beside a
statement it runs anyway can skip the observer's own query; true after an erasure, and the new mail is flagged."""

from __future__ import annotations

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.mail.intake import REGISTRY, Inbound
from app.mail.parse import parse_mail
from app.subject_data import service
from app.subject_data.aftercare import FLAG
from app.subject_data.models import SubjectRun
from app.tickets import service as tickets
from tests.factories import TEST_PRINCIPAL
from tests.mail.conftest import build
from tests.subject_data.support import CANARY_EMAIL, T0, drain, instruct, scene

NAME = "subject_data.erased_subject"


def _prechecked(session: Session) -> dict[str, bool]:
    checks = REGISTRY.prechecks()
    row = session.execute(select(*checks.values())).one()._mapping
    return {name: bool(row[label.name]) for name, label in checks.items()}


def _offer(session: Session, ticket: tickets.Ticket, prechecked: dict[str, bool]) -> tuple[tickets.Message, list[str]]:
    message = tickets.add_message(
        session, ticket, tickets.MessageInput(direction="inbound", sender_email=CANARY_EMAIL, body_text="me again"), by=TEST_PRINCIPAL, now=T0
    )
    mail = parse_mail(build(sender=CANARY_EMAIL, to="support@desk.example", body="me again"), attachment_max_bytes=1_000_000)
    inbound = Inbound(ticket, message, mail, b"", False, None, "support@desk.example", "privacy@desk.example", prechecked)
    seen: list[str] = []
    listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: seen.append(a[2]))
    with REGISTRY.scoped() as registry:  # the observer alone (the other handlers want a parsed mail)
        for name in registry.names:
            if name != NAME:
                registry.remove(name)
        registry.offer(session, inbound, by=TEST_PRINCIPAL, now=T0)
    event.remove(session.connection(), "before_cursor_execute", listen)
    return message, seen


def test_nobody_erased_no_query_of_the_observer_then_an_erased_subjects_mail_is_flagged(session: Session) -> None:
    # Given a controller whose subject has tickets and nobody ever erased
    sc = scene(session)
    assert NAME in REGISTRY.prechecks()
    prechecked = _prechecked(session)
    assert prechecked[NAME] is False
    # When the subject writes: the observer is skipped, no statement of its own, no flag
    message, seen = _offer(session, sc.tickets[0], prechecked)
    assert not [s for s in seen if "subject_erasures" in s]
    assert FLAG not in (message.flags or [])
    # After an erasure the precheck reads true, and the subject's next mail is flagged as before
    instruct(session, sc, "erase")
    run = service.start(session, sc.dsr.id, sc.controller.id, "erase", by=TEST_PRINCIPAL, now=T0)
    drain(session, run.id)
    session.expire_all()
    record = session.get(SubjectRun, run.id)
    assert record is not None and record.state == "done"
    prechecked = _prechecked(session)
    assert prechecked[NAME] is True
    ticket = session.get(tickets.Ticket, sc.tickets[0].id)
    assert ticket is not None
    message, _seen = _offer(session, ticket, prechecked)
    assert FLAG in message.flags


def test_ingest_reads_the_precheck_beside_its_duplicate_lookup_and_asks_nothing_while_nobody_was_erased(session: Session) -> None:
    # Given a desk where nobody was ever erased, mail from a subject who has tickets
    from app.mail.inbound import IngestSettings, ingest_message

    scene(session)
    raw = (
        f"From: Somebody <{CANARY_EMAIL}>\r\nTo: support@desk.example\r\nSubject: My order\r\n"
        "Message-ID: <precheck-1@canary-subject.example>\r\nDate: Mon, 30 Nov 2026 10:00:00 +0000\r\n\r\nWhere is my parcel?\r\n"
    ).encode()
    seen: list[str] = []
    listen = event.listens_for(session.connection(), "before_cursor_execute")(lambda *a: seen.append(a[2]))
    settings = IngestSettings(support_address="support@desk.example", privacy_address="privacy@desk.example")
    try:
        outcome = ingest_message(session, raw, settings=settings, by=TEST_PRINCIPAL, now=T0)
    finally:
        event.remove(session.connection(), "before_cursor_execute", listen)
    # Then it is stored unflagged, and the only statement naming the erasure marks is the duplicate lookup's precheck
    assert outcome.status == "stored"
    message = session.get(tickets.Message, outcome.message_pk)
    assert message is not None and FLAG not in (message.flags or [])
    naming = [s for s in seen if "subject_erasures" in s]
    assert len(naming) == 1 and "message_id_bidx" in naming[0], naming
