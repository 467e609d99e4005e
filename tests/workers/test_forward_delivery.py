"""Issue 15 item 1: "forwarded" means the controller's relay accepted the forward.

Real mail in (`mail ingest`), real workers, a real relay on loopback
(aiosmtpd) that refuses chosen recipients with 550 or is stopped. Time is
moved with time-machine where the 24-hour clock matters.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from flask import Flask
from sqlalchemy import select

from app.controllers.service import ControllerInput, create_controller
from app.db import utcnow
from app.dsr.models import Dsr, DsrEvent
from app.dsr.settings import DsrSettings
from app.dsr.sweeper import sweep
from app.extensions import db
from app.mail.models import OutboxEmail
from tests.factories import TEST_PRINCIPAL, make_user
from tests.workers.smtp_support import SmtpServer, wait_for
from tests.workers.support import worker
from tests.workers.test_dsr_loop import ingest, subject_mail

DPO = "dpo@acme-corp.example"
LEGAL = "legal@acme-corp.example"
BREACH = "security@acme-corp.example"
OFFICER = "officer@desk.example"


@pytest.fixture
def desk(mail_app: Flask) -> Flask:
    """The desk sending through the loopback relay (mail_app), with Acme (two DSR contacts, a breach contact) and a privacy officer."""
    acme = ControllerInput(name="Acme Corp", dsr_contacts=[DPO, LEGAL], breach_contacts=[BREACH], domains=["acme-corp.example"], identifiers=["ACME-4711"])
    with mail_app.app_context(), db.session_scope() as session:
        create_controller(session, acme, by=TEST_PRINCIPAL, now=utcnow())
        make_user(session, "privacy_officer", email=OFFICER)
    return mail_app


def the_dsr(app: Flask) -> Dsr:
    with app.app_context(), db.session_scope() as session:
        dsr = session.scalars(select(Dsr)).one()
        _ = dsr.forwards, dsr.events
        return dsr


def rows(app: Flask, kind: str) -> list[OutboxEmail]:
    with app.app_context(), db.session_scope() as session:
        found = list(session.scalars(select(OutboxEmail).where(OutboxEmail.kind == kind).order_by(OutboxEmail.id)))
        for row in found:
            _ = row.to_addr, row.body_text
        return found


def states(app: Flask, kind: str) -> dict[str, str]:
    return {row.to_addr or "": row.state for row in rows(app, kind)}


def test_a_forward_the_relay_refused_for_one_contact_is_forwarded_by_the_other_and_escalated_at_once(desk: Flask, smtp: SmtpServer) -> None:
    # Given the relay refuses Acme's legal address with 550
    smtp.handler.refuse = {LEGAL}
    with worker():
        assert ingest(desk, subject_mail()) == 0
        wait_for(lambda: states(desk, "dsr_forward") == {DPO: "sent", LEGAL: "failed"})
        wait_for(lambda: [r for r in smtp.received if OFFICER in r.rcpt_tos])
    dsr = the_dsr(desk)
    accepted = rows(desk, "dsr_forward")[0]
    # Then the request counts as forwarded from the relay's acceptance for the DPO, not from the queueing
    assert dsr.state == "forwarded" and dsr.forwards[0].state == "forwarded"
    assert accepted.sent_at is not None and dsr.forwarded_at == dsr.forwards[0].forwarded_at == accepted.sent_at
    # And the privacy officers hear of the refusal at once, with the relay's answer and the other contacts
    alert = [r for r in rows(desk, "dsr_escalation") if r.to_addr == OFFICER]
    assert len(alert) == 1 and "550 5.1.1" in (alert[0].body_text or "") and BREACH in (alert[0].body_text or "")
    # (each contact's state as it was at the refusal: the DPO's row may still have been on its way)
    assert f"{LEGAL}: failed" in (alert[0].body_text or "") and f"{DPO}: " in (alert[0].body_text or "")
    assert "acme" not in alert[0].subject.lower()
    assert {"forward", "forward_accepted", "forward_refused"} <= {e.code for e in dsr.events}


def test_a_forward_the_relay_refused_for_every_contact_stays_unforwarded_and_runs_to_missed(desk: Flask, smtp: SmtpServer) -> None:
    smtp.handler.refuse = {LEGAL, DPO}
    start = dt.datetime(2026, 11, 20, 23, 50, tzinfo=dt.UTC)
    with time_machine.travel(start, tick=True):
        with worker():
            assert ingest(desk, subject_mail()) == 0
            wait_for(lambda: states(desk, "dsr_forward") == {DPO: "failed", LEGAL: "failed"})
            wait_for(lambda: len([e for e in the_dsr(desk).events if e.code == "forward_refused"]) == 2)
        dsr = the_dsr(desk)
        # Then nothing says "forwarded": the forward is refused, the request still owes its forward, escalated at once
        assert dsr.state == "awaiting_forward" and dsr.forwarded_at is None and dsr.forwards[0].state == "refused"
        assert dsr.escalated_at is not None and dsr.escalated_at - dsr.received_at < dt.timedelta(minutes=1)
        assert len([r for r in rows(desk, "dsr_escalation") if r.to_addr == OFFICER]) == 2
        due = dsr.due_at
    settings = DsrSettings.from_config(desk.config)
    # When the 24-hour clock runs out, the refused forward has missed its deadline (one second before: not yet)
    for at, missed in ((due - dt.timedelta(seconds=1), False), (due + dt.timedelta(seconds=1), True)):
        with time_machine.travel(at, tick=False), desk.app_context(), db.session_scope() as session:
            sweep(session, settings=settings, by=TEST_PRINCIPAL, now=utcnow())
        assert (the_dsr(desk).missed_at is not None) is missed


def test_during_a_relay_outage_the_forward_is_queued_and_forwarded_when_the_relay_accepts_it(desk: Flask, smtp: SmtpServer) -> None:
    # Given the relay is down
    smtp.stop()
    with worker():
        assert ingest(desk, subject_mail()) == 0
        wait_for(lambda: all(r.attempts >= 1 and r.state == "queued" for r in rows(desk, "dsr_forward")) and rows(desk, "dsr_forward"))
        dsr = the_dsr(desk)
        # Then the request is "forward queued", not forwarded, and its clock runs
        assert dsr.state == "awaiting_forward" and dsr.forwarded_at is None and [f.state for f in dsr.forwards] == ["queued"]
        with desk.app_context(), db.session_scope() as session:
            assert not session.scalars(select(DsrEvent).where(DsrEvent.code == "forward_accepted")).all()
        # When the relay comes back, the first acceptance makes it forwarded
        smtp.start()
        wait_for(lambda: the_dsr(desk).forwarded_at is not None)
    dsr = the_dsr(desk)
    sent = [r.sent_at for r in rows(desk, "dsr_forward") if r.sent_at is not None]
    assert dsr.state == "forwarded" and dsr.forwarded_at == min(sent)
