"""The DSR loop end to end: real mail in (`mail ingest`), real mail out (aiosmtpd on loopback), real workers, moved clocks.

Each test has its own committed database (committed_app): workers commit in
their own sessions. Time is moved with time-machine; the worker threads see
the moved clock too.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from typing import Any

import dramatiq
import pytest
import time_machine
from flask import Flask
from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.controllers.service import ControllerInput, create_controller
from app.db import utcnow
from app.dsr import gate
from app.dsr import instructions as dsr_instructions
from app.dsr.forward import ring_forward
from app.dsr.models import Dsr, DsrForward, Instruction
from app.extensions import db
from app.mail import outbox
from config.settings import REPO_ROOT
from tests.factories import TEST_PRINCIPAL
from tests.workers.smtp_support import SmtpServer, wait_for
from tests.workers.support import process_env, worker
from workers import mail as mail_actors

FRIDAY_2350 = dt.datetime(2026, 11, 20, 23, 50, tzinfo=dt.UTC)
DPO = "dpo@acme-corp.example"


@pytest.fixture
def desk(committed_app: Flask, smtp: SmtpServer) -> Flask:
    """The private app sending through the loopback SMTP server, with one controller (Acme) and a privacy officer."""
    committed_app.config.update(SMTP_URL=f"smtp://127.0.0.1:{smtp.port}?timeout=10", PRIVACY_ADDRESS="privacy@desk.example", OUTBOX_RETRY_BASE_SECONDS=0.3)
    dramatiq.get_broker().flush_all()
    with committed_app.app_context(), db.session_scope() as session:
        create_controller(
            session,
            ControllerInput(name="Acme Corp", dsr_contacts=[DPO], domains=["acme-corp.example"], identifiers=["ACME-4711"]),
            by=TEST_PRINCIPAL,
            now=utcnow(),
        )
    return committed_app


def subject_mail(message_id: str = "<req-1@mailbox.example>") -> bytes:
    return (
        "From: Jane Doe <jane@mailbox.example>\r\nTo: privacy@desk.example\r\nSubject: My data\r\n"
        f"Message-ID: {message_id}\r\nDate: Fri, 20 Nov 2026 23:50:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Hello, I am a customer of Acme (customer number ACME-4711).\r\nPlease delete my personal data and send me a copy of my data first.\r\n"
    ).encode()


def controller_reply(
    forward_msgid: str, *, sender: str = DPO, text: str = "Please tell the subject: we have erased your data.", msgid: str = "<reply-1@acme-corp.example>"
) -> bytes:
    return (
        "Authentication-Results: mx.desk.example; dkim=pass header.d=acme-corp.example; spf=pass; dmarc=pass\r\n"
        f"From: Acme DPO <{sender}>\r\nTo: privacy@desk.example\r\nSubject: Re: Data subject request\r\n"
        f"Message-ID: {msgid}\r\nIn-Reply-To: {forward_msgid}\r\nReferences: {forward_msgid}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n\r\nOn Sat, the desk wrote:\r\n> Data subject request\r\n"
    ).encode()


def ingest(app: Flask, raw: bytes) -> int:
    """`flask mail ingest < message.eml`, as the MTA pipe runs it."""
    result = app.test_cli_runner().invoke(args=["mail", "ingest"], input=raw)
    return int(result.exit_code)


def the_dsr(app: Flask) -> Dsr:
    with app.app_context(), db.session_scope() as session:
        dsr = session.scalars(select(Dsr)).one()
        _ = dsr.forwards, dsr.instructions, dsr.events
        return dsr


def forwards_sent(smtp: SmtpServer) -> list[Any]:
    return [r for r in smtp.received if "Data subject request DSR-" in str(r.message["Subject"])]


def test_the_whole_loop_friday_night_request_forwarded_at_once_instruction_confirmed_reply_sent(desk: Flask, smtp: SmtpServer) -> None:
    with time_machine.travel(FRIDAY_2350, tick=True):
        with worker():
            # Given a subject writes to the privacy address on Friday at 23:50
            assert ingest(desk, subject_mail()) == 0
            dsr = the_dsr(desk)
            assert dsr.received_at - FRIDAY_2350 < dt.timedelta(minutes=1)
            assert dsr.due_at == dsr.received_at + dt.timedelta(hours=24)
            assert set(dsr.types) >= {"access", "erasure"}
            # Then the controller has the request within moments, not on Monday
            wait_for(lambda: forwards_sent(smtp))
        dsr = the_dsr(desk)
        assert dsr.state == "forwarded" and dsr.forwarded_at is not None
        assert dsr.forwarded_at - dsr.received_at < dt.timedelta(minutes=2)
        assert dsr.forwarded_at < dt.datetime(2026, 11, 21, 23, 50, tzinfo=dt.UTC)
        forward = forwards_sent(smtp)[0].message
        assert forward["To"] == DPO and forward["Reply-To"] == "privacy@desk.example"
        assert "jane" not in str(forward["Subject"]).lower()
        assert "ACME-4711" in forward.get_content() and "How to reply" in forward.get_content()

        # When the subject writes again, nothing goes back without the controller's instruction
        with desk.app_context():
            with pytest.raises(gate.InstructionRequired), db.session_scope() as session:
                outbox.enqueue_email(
                    session,
                    to="jane@mailbox.example",
                    subject=f"Your request {dsr.reference}",
                    body_text="We are on it",
                    kind="reply",
                    by=TEST_PRINCIPAL,
                    now=utcnow(),
                )
            with db.session_scope() as session:
                refused = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "dsr.reply_refused"))
        assert refused == 1

        # And a reply from someone who is not Acme's registered contact is kept but cannot be confirmed
        assert ingest(desk, controller_reply(forward["Message-ID"], sender="ceo@acme-corp.example", msgid="<spoof@acme-corp.example>")) == 0
        # The controller answers the forward by email
        assert ingest(desk, controller_reply(forward["Message-ID"])) == 0
        with desk.app_context(), db.session_scope() as session:
            rows = list(session.scalars(select(Instruction).order_by(Instruction.id)))
            assert [(i.state, i.verified) for i in rows] == [("unverified", False), ("pending", True)]
            genuine = rows[1]
            assert genuine.reply_text is not None and "we have erased your data" in genuine.reply_text and "the desk wrote" not in genuine.reply_text
            assert genuine.auth_verdict == "dkim=pass spf=pass dmarc=pass" and len(genuine.raw_sha256) == 64
            assert genuine.sender_email == DPO
            with pytest.raises(dsr_instructions.InstructionNotConfirmable):
                dsr_instructions.confirm(session, dsr.id, rows[0].id, "respond", response_text="anything", by=TEST_PRINCIPAL, now=utcnow())
            # A privacy officer confirms what the controller said
            dsr_instructions.confirm(session, dsr.id, genuine.id, "respond", response_text="We have erased your data.", by=TEST_PRINCIPAL, now=utcnow())
        with desk.app_context(), db.session_scope() as session:
            outbox.enqueue_email(
                session,
                to="jane@mailbox.example",
                subject=f"Your request {dsr.reference}",
                body_text=gate.response_body("We have erased your data."),  # the instructed text itself (issue 12 item 3)
                kind="reply",
                by=TEST_PRINCIPAL,
                now=utcnow(),
            )
        with worker():
            wait_for(lambda: [r for r in smtp.received if r.rcpt_tos == ["jane@mailbox.example"]])
    to_subject = [r for r in smtp.received if r.rcpt_tos == ["jane@mailbox.example"]]
    assert len(to_subject) == 1 and "We have erased your data." in to_subject[0].message.get_content()
    assert len(forwards_sent(smtp)) == 1
    assert the_dsr(desk).state == "instructed"


def test_broker_down_for_six_hours_the_sweeper_forwards_before_the_deadline(desk: Flask, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = dramatiq.get_broker()

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    runner = desk.test_cli_runner()
    with time_machine.travel(FRIDAY_2350, tick=False) as clock:
        with monkeypatch.context() as patch:
            # Given the broker refuses every message for six hours
            patch.setattr(broker, "enqueue", broker_down)
            assert ingest(desk, subject_mail()) == 0  # the doorbell to the forward actor is lost
            assert the_dsr(desk).forwarded_at is None
            # When cron runs one sweeper pass a minute (the scheduler's own doorbell cannot get through either)
            for minute in range(1, 8):
                clock.move_to(FRIDAY_2350 + dt.timedelta(minutes=minute))
                assert runner.invoke(args=["dsr", "sweep"]).exit_code == 0
            clock.move_to(FRIDAY_2350 + dt.timedelta(hours=6))
            assert runner.invoke(args=["dsr", "sweep"]).exit_code == 0
        dsr = the_dsr(desk)
        # Then the sweeper queued the forward itself once the doorbell was overdue, long before the deadline;
        # it is not "forwarded" until the relay accepts it (issue 15 item 1)
        assert dsr.forwarded_at is None and [f.state for f in dsr.forwards] == ["queued"]
        queued_at = [e.at for e in dsr.events if e.code == "forward"]
        assert len(queued_at) == 1 and queued_at[0] <= FRIDAY_2350 + dt.timedelta(minutes=6)
        # And the email leaves when the broker is back (the outbox's own sweeper), still before the deadline
        with worker():
            mail_actors.sweep_outbox.send()
            wait_for(lambda: forwards_sent(smtp))
            wait_for(lambda: the_dsr(desk).forwarded_at is not None)
            time.sleep(0.5)
        dsr = the_dsr(desk)
        assert dsr.forwarded_at == FRIDAY_2350 + dt.timedelta(hours=6) and dsr.forwarded_at < dsr.due_at and dsr.missed_at is None
    assert len(forwards_sent(smtp)) == 1


_FORWARD_THEN_HANG = """
import sys, time
from app import create_app
from app.db import utcnow
from app.dsr.forward import forward
from app.dsr.settings import DsrSettings
from app.extensions import db
from app.principal import Principal
app = create_app()
with app.app_context(), db.session_scope() as session:
    settings = DsrSettings.from_config(app.config)
    n = forward(session, int(sys.argv[1]), settings=settings, by=Principal.system("dsr forward"), now=utcnow())
    print("forwarded-uncommitted", n, flush=True)
    time.sleep(120)  # killed here: the forward and its outbox rows are never committed
"""


def test_a_worker_killed_mid_forward_and_duplicate_doorbells_still_forward_once(desk: Flask, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    broker = dramatiq.get_broker()
    with monkeypatch.context() as patch:
        patch.setattr(broker, "enqueue", lambda *a, **k: None)  # keep the doorbell away from any worker for now
        assert ingest(desk, subject_mail()) == 0
    dsr = the_dsr(desk)
    env = process_env(desk, PRIVACY_ADDRESS="privacy@desk.example")
    # Given a worker process that forwarded but is killed before its commit
    proc = subprocess.Popen([sys.executable, "-c", _FORWARD_THEN_HANG, str(dsr.id)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("forwarded-uncommitted 1"), proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else line
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    assert the_dsr(desk).forwarded_at is None  # nothing of the dead worker's forward survived
    # When the doorbell rings three times at once (redelivery, sweeper, a duplicate)
    with worker():
        for _ in range(3):
            ring_forward([dsr.id])
        wait_for(lambda: forwards_sent(smtp))
        time.sleep(1.0)  # room for any duplicate to show up
    # Then the controller got exactly one forward and the database holds one forward row
    assert len(forwards_sent(smtp)) == 1
    with desk.app_context(), db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(DsrForward).where(DsrForward.dsr_id == dsr.id)) == 1
    assert the_dsr(desk).state == "forwarded"
