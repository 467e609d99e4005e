"""Outbound policies asked again when a row is claimed for sending (issue 10 item 2, issue 12 item 1).

A reply allowed when it was queued must not reach the data subject if, before
it leaves, the requester opened a request the instruction gate protects: not on
the first try, not on a retry after backoff, not after an operator's requeue,
not on a resend after a stale claim. Each test has its own committed database
and the loopback SMTP server (tests/workers/smtp_support.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import create_app
from app.audit.models import AuditEvent
from app.db import utcnow
from app.dsr import gate
from app.dsr.models import Dsr
from app.extensions import db
from app.mail import delivery, figures, outbox
from app.mail.models import OutboxEmail
from app.mail.outbox_settings import OutboundSettings
from app.mail.policies import POLICIES, OutboundMessage, OutboundRefused, PoliciesNotInstalled, PolicyRegistry, Refusal
from tests.factories import TEST_PRINCIPAL
from tests.workers.smtp_support import SmtpServer
from tests.workers.support import STALE_SECONDS, row_of

SUBJECT = "jane@mailbox.example"


def queue_reply(app: Flask, *, to: str = SUBJECT, body: str = "Hello Jane, here is the booking you asked about.") -> OutboxEmail:
    """A staff reply to the requester, queued and committed as the ticket view does (no request open yet: allowed)."""
    with app.app_context(), db.session_scope() as session:
        return outbox.enqueue_email(
            session,
            to=to,
            subject="Re: your request [T-2026-000001]",
            body_text=body,
            kind="reply",
            msgid_domain="desk.example",
            by=TEST_PRINCIPAL,
            now=utcnow(),
        )


def objection_mail() -> bytes:
    """The requester objects to the processing of their data: mail to the privacy address opens a request."""
    return (
        f"From: Jane Doe <{SUBJECT}>\r\nTo: privacy@desk.example\r\nSubject: Objection\r\n"
        "Message-ID: <objection-1@mailbox.example>\r\nDate: Sat, 21 Nov 2026 09:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "I object to the processing of my personal data. Stop processing my data.\r\n"
    ).encode()


def open_objection(app: Flask) -> Dsr:
    """`flask mail ingest < objection.eml`, as the MTA pipe runs it; returns the open request it created."""
    result = app.test_cli_runner().invoke(args=["mail", "ingest"], input=objection_mail())
    assert result.exit_code == 0, result.output
    with app.app_context(), db.session_scope() as session:
        dsr = session.scalars(select(Dsr)).one()
        assert dsr.is_open and dsr.subject_email == SUBJECT
        return dsr


def events(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context(), db.session_scope() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def to_subject(smtp: SmtpServer) -> list[Any]:
    return [r for r in smtp.received if SUBJECT in r.rcpt_tos]


def deliver_at(app: Flask, outbox_id: int, when: dt.datetime) -> str:
    with app.app_context():
        return delivery.deliver(db.session_scope, outbox_id, settings=OutboundSettings.from_config(app.config), clock=lambda: when)


def assert_refused_by_the_gate(app: Flask, row_id: int, dsr_id: int, *, stale: bool = False) -> None:
    row = row_of(app, row_id)
    assert row.state == "refused" and row.claim_token is None
    assert row.delivery_note == "refused by dsr.instruction_gate (instruction_required)"
    [refused] = [e for e in events(app, "outbox.refused") if e.target_id == str(row_id)]
    assert refused.target_type == "outbox_email"
    assert refused.details["policies"] == ["dsr.instruction_gate"] and refused.details["reasons"] == ["instruction_required"]
    assert refused.details["stale_claim"] is stale
    on_dsr = [e for e in events(app, "dsr.reply_refused") if e.details.get("outbox_id") == row_id]
    assert [(e.target_type, e.target_id, e.details["at_claim"]) for e in on_dsr] == [("dsr", str(dsr_id), True)]
    assert SUBJECT not in str(refused.details) and "jane" not in str(on_dsr[0].details).lower()  # ids and codes only


def test_a_reply_queued_while_the_relay_refused_is_not_sent_after_the_requester_objected(mail_app: Flask, smtp: SmtpServer) -> None:
    runner = mail_app.test_cli_runner()
    # Given a reply to the requester, queued while the SMTP relay refused (it fails for good)
    smtp.handler.rcpt_reply = "550 5.7.1 relaying denied"
    row = queue_reply(mail_app)
    first = runner.invoke(args=["mail", "sweep-outbox", "--send-now"])
    assert first.exit_code == 0, first.output
    assert row_of(mail_app, row.id).state == "failed" and to_subject(smtp) == []
    # And then the requester opens an objection (a request the instruction gate protects)
    dsr = open_objection(mail_app)
    # When the relay is fixed and the operator requeues the reply and sends the outbox from the command line
    smtp.handler.rcpt_reply = None
    requeued = runner.invoke(args=["mail", "requeue-outbox", str(row.id)])
    assert requeued.exit_code == 0, requeued.output
    swept = runner.invoke(args=["mail", "sweep-outbox", "--send-now"])
    assert swept.exit_code == 0, swept.output
    # Then nothing reached the data subject: the row ends refused, and the refusal is audited
    assert to_subject(smtp) == []
    assert "refused=1" in swept.output and "sent=0" in swept.output
    assert_refused_by_the_gate(mail_app, row.id, dsr.id)
    # And a refused row cannot be requeued
    again = runner.invoke(args=["mail", "requeue-outbox", str(row.id)])
    assert again.exit_code == 2 and "is refused, not failed" in again.output


def test_a_retry_after_backoff_is_refused_once_the_requester_has_an_open_request(mail_app: Flask, smtp: SmtpServer) -> None:
    # Given the relay is down on the first try: the reply goes back to the queue with a backoff
    smtp.stop()
    row = queue_reply(mail_app)
    assert deliver_at(mail_app, row.id, utcnow()) == "queued"
    waiting = row_of(mail_app, row.id)
    assert waiting.state == "queued" and waiting.attempts == 1
    # And the requester objects meanwhile
    dsr = open_objection(mail_app)
    smtp.start()
    # When the retry falls due
    assert deliver_at(mail_app, row.id, waiting.due_at + dt.timedelta(seconds=1)) == "refused"
    # Then it is refused, not sent
    assert to_subject(smtp) == []
    assert_refused_by_the_gate(mail_app, row.id, dsr.id)


def test_a_resend_after_a_stale_claim_is_refused_the_same_way(mail_app: Flask, smtp: SmtpServer) -> None:
    # Given a worker claimed the reply and died before sending
    row = queue_reply(mail_app)
    claimed_at = utcnow()
    with mail_app.app_context(), db.session_scope() as session:
        assert delivery.claim(session, row.id, now=claimed_at, timing=OutboundSettings.from_config(mail_app.config).timing) is not None
    # And the requester objects before the claim goes stale
    dsr = open_objection(mail_app)
    # When the sweeper's worker takes the stale row over
    assert deliver_at(mail_app, row.id, claimed_at + dt.timedelta(seconds=STALE_SECONDS + 1)) == "refused"
    # Then nothing is sent and the row says why
    assert to_subject(smtp) == []
    assert_refused_by_the_gate(mail_app, row.id, dsr.id, stale=True)


def test_a_policy_registered_by_a_test_refuses_a_row_at_claim_time(mail_app: Flask, smtp: SmtpServer) -> None:
    row = queue_reply(mail_app, to="dpo@controller.example")
    seen: list[OutboundMessage] = []

    def hold(session: Session, message: OutboundMessage, *, now: dt.datetime) -> Refusal | None:
        seen.append(message)
        return Refusal(reason="held", error=OutboundRefused("held"), targets=(("ticket", 42),), audit_action="test.mail_held", details={"kind": message.kind})

    with POLICIES.registered("test.hold", hold):
        assert POLICIES.names[0] == gate.POLICY_NAME and POLICIES.names[-1] == "test.hold"
        assert deliver_at(mail_app, row.id, utcnow()) == "refused"
    assert gate.POLICY_NAME in POLICIES.names and "test.hold" not in POLICIES.names  # restored after the block
    assert [(m.outbox_id, m.to, m.kind) for m in seen] == [(row.id, "dpo@controller.example", "reply")]
    assert smtp.received == []
    done = row_of(mail_app, row.id)
    assert done.state == "refused" and done.delivery_note == "refused by test.hold (held)" and done.attempts == 1
    [held] = events(mail_app, "test.mail_held")
    assert (held.target_type, held.target_id) == ("ticket", "42")
    assert held.details == {"kind": "reply", "outbox_id": row.id, "at_claim": True}
    [refused] = events(mail_app, "outbox.refused")
    assert refused.details == {"policies": ["test.hold"], "reasons": ["held"], "attempt": 1, "stale_claim": False}
    # A refused row is not picked up again
    with mail_app.app_context(), db.session_scope() as session:
        assert delivery.due_for_delivery(session, now=utcnow() + dt.timedelta(hours=1), timing=OutboundSettings.from_config(mail_app.config).timing) == []
        assert figures.backlog(session, now=utcnow())["refused"] == 1
    assert deliver_at(mail_app, row.id, utcnow()) == "skipped"


def test_a_policy_refusal_at_enqueue_raises_its_error_queues_nothing_and_is_audited_after_the_rollback(mail_app: Flask) -> None:
    def hold(session: Session, message: OutboundMessage, *, now: dt.datetime) -> Refusal | None:
        return Refusal(reason="held", error=OutboundRefused("held for review"))

    with POLICIES.registered("test.hold", hold), pytest.raises(OutboundRefused, match="held for review"):
        queue_reply(mail_app, to="dpo@controller.example")
    with mail_app.app_context(), db.session_scope() as session:
        assert session.scalars(select(OutboxEmail)).all() == []
    [event] = events(mail_app, "outbox.policy_refused")
    assert (event.target_type, event.target_id) == ("outbound_policy", "test.hold")


def test_a_row_still_allowed_is_delivered_as_before_and_every_policy_was_asked_twice(mail_app: Flask, smtp: SmtpServer) -> None:
    asked: list[int | None] = []

    def allow(session: Session, message: OutboundMessage, *, now: dt.datetime) -> Refusal | None:
        asked.append(message.outbox_id)
        return None

    with POLICIES.registered("test.allow", allow):
        row = queue_reply(mail_app, to="dpo@controller.example")
        assert deliver_at(mail_app, row.id, utcnow()) == "sent"
    assert asked == [None, row.id]  # when queued (no row yet), then when claimed
    assert [r.rcpt_tos for r in smtp.received] == [["dpo@controller.example"]]
    done = row_of(mail_app, row.id)
    assert done.state == "sent" and done.delivery_note == "sent on first attempt"
    assert events(mail_app, "outbox.refused") == []


def test_the_registry_keeps_one_entry_per_policy_however_many_apps_a_process_creates(mail_app: Flask, tmp_path: Any) -> None:
    # The suite's app and the committed app were created already; one more, on the same settings.
    create_app(dict(mail_app.config, INSTANCE_PATH=str(tmp_path / "third")))
    assert POLICIES.names.count(gate.POLICY_NAME) == 1 and POLICIES.names[0] == gate.POLICY_NAME


def test_an_empty_registry_fails_closed() -> None:
    registry = PolicyRegistry()
    message = OutboundMessage(to="dpo@controller.example", kind="notice", body_text="x")
    with pytest.raises(PoliciesNotInstalled):
        registry.refusals(None, message, now=utcnow())  # type: ignore[arg-type]  # never reached: no policy to ask


def test_registering_a_name_again_replaces_the_policy_in_its_place() -> None:
    registry = PolicyRegistry()

    def first(session: Session, message: OutboundMessage, *, now: dt.datetime) -> Refusal | None:
        return None

    def second(session: Session, message: OutboundMessage, *, now: dt.datetime) -> Refusal | None:
        return Refusal(reason="second", error=OutboundRefused("no"))

    registry.add("a", first)
    registry.add("b", first)
    registry.add("a", second)
    assert registry.names == ["a", "b"]
    found = registry.refusals(None, OutboundMessage(to="x@y.example", kind="notice", body_text=""), now=utcnow())  # type: ignore[arg-type]
    assert [(r.policy, r.reason) for r in found] == [("a", "second")]
    with registry.registered("c", second):
        assert registry.names == ["a", "b", "c"]
    assert registry.names == ["a", "b"]
