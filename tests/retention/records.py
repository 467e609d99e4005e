"""Items of the record categories at chosen times (quarantined mail, sent outbox rows, closed DSRs, exports, sessions) and a clocked run."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from typing import Any

import time_machine
from flask import Flask
from sqlalchemy.orm import Session

from app.auth.models import StaffSession
from app.auth.sessions import revoke_session, start_session
from app.blobs.store import store_blob
from app.controllers.models import Controller
from app.db import utcnow
from app.dsr.models import Dsr
from app.dsr.requests import DsrInput, create_dsr
from app.mail import quarantine
from app.mail.models import OutboxEmail
from app.mail.outbox import enqueue_email
from app.mail.outbox_settings import OutboundSettings
from app.mail.transport import FileTransport
from app.retention import runner
from app.retention.models import RetentionRun
from app.subject_data.models import SubjectExport, SubjectRun
from app.tickets.models import key_owner_for
from tests.factories import make_instruction, make_user
from tests.retention.support import SYSTEM, run_now

SECOND = dt.timedelta(seconds=1)


def clock_run(session: Session, at: dt.datetime, **filters: Any) -> runner.RunResult:
    """A whole run with the clock the run reads (utcnow) moved to `at` by the time-travel library."""
    with time_machine.travel(at, tick=False):
        return run_now(session, utcnow(), **filters)


def clock_preview(session: Session, at: dt.datetime, category: str) -> list[runner.PreviewLine]:
    """The dry run's lines for one category at `at`."""
    with time_machine.travel(at, tick=False):
        return runner.preview(session, only_category=category, now=utcnow())


def ledger(session: Session, run_id: int) -> dict[str, Any]:
    """A finished run's counts."""
    session.expire_all()
    run = session.get(RetentionRun, run_id)
    assert run is not None and run.state == "done", run and (run.state, run.errors)
    return dict(run.counts)


def quarantined(session: Session, sender: str, when: dt.datetime, n: int = 0) -> quarantine.QuarantinedMessage:
    """A message from `sender` refused by ingest at `when` (held, never released)."""
    raw = f"From: Someone <{sender}>\r\nTo: support@desk.example\r\nSubject: broken {n}\r\n\r\nbody {n}\r\n".encode()
    return quarantine.hold(session, raw, reason="malformed", detail="test", source="test", by=SYSTEM, now=when)


def sent_email(session: Session, app: Flask | None, controller: Controller | None, to: str, when: dt.datetime, **kw: Any) -> OutboxEmail:
    """An email queued and delivered at `when` (the relay accepted it); with `app`, its copy written to the file outbox."""
    row = enqueue_email(
        session,
        to=to,
        subject="About your request",
        body_text=f"Dear {to}, here is the answer.",
        body_html=f"<p>Dear {to}</p>",
        in_reply_to="<asked.1@customer.example>",
        controller_id=controller.id if controller else None,
        by=SYSTEM,
        now=when - dt.timedelta(minutes=1),
        **kw,
    )
    row.state, row.sent_at = "sent", when
    session.flush()
    if app is not None:
        transport = OutboundSettings.from_config(app.config).transport
        assert isinstance(transport, FileTransport)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"], message["Message-ID"] = "privacy@desk.example", to, row.subject, row.message_id
        message.set_content(row.body_text)
        transport.send(message, sender="privacy@desk.example", recipient=to)
    return row


def closed_dsr(session: Session, controllers: list[Controller], when: dt.datetime, email: str = "subject@people.example") -> Dsr:
    """A request about `email` forwarded to these controllers, answered by the first, closed at `when`."""
    data = DsrInput(
        types=["access"], subject_email=email, subject_name="Sam Subject", subject_identifiers="ACCT-77", request_text="Sam Subject asks for a copy."
    )
    start = when - dt.timedelta(days=20)
    dsr = create_dsr(session, data, source="staff", received_at=start, ticket=None, controller_ids=[c.id for c in controllers], by=SYSTEM, now=start)
    if controllers:
        make_instruction(
            session, dsr, controller_id=controllers[0].id, sender_email=controllers[0].contact_emails("dsr")[0], reply_text="Send Sam his data.", now=start
        )
    dsr.state, dsr.is_open, dsr.closed_at, dsr.outcome = "closed", False, when, "answered"
    session.flush()
    return dsr


def export_file(session: Session, dsr: Dsr, controller: Controller, when: dt.datetime, content: bytes = b'{"subject": "Sam Subject"}') -> SubjectExport:
    """A JSON export of the request's subject made at `when` (its file a blob under the controller's key)."""
    run = SubjectRun(
        dsr_id=dsr.id,
        controller_id=controller.id,
        kind="export",
        state="done",
        instruction_id=0,
        key_owner=key_owner_for(controller.id),
        report={},
        created_at=when,
        updated_at=when,
    )
    session.add(run)
    session.flush()
    blob = store_blob(session, content, key_owner=key_owner_for(controller.id), now=when)
    export = SubjectExport(
        run_id=run.id,
        dsr_id=dsr.id,
        controller_id=controller.id,
        format="json",
        blob_id=blob.id,
        size=blob.size,
        sha256=blob.sha256,
        created_at=when,
        expires_at=when + dt.timedelta(days=400),  # not expired by the export's own clock: retention is what deletes it here
    )
    session.add(export)
    session.flush()
    return export


def staff_session(session: Session, email: str, login: dt.datetime, *, ended: dt.datetime | None = None, address: str = "203.0.113.7") -> StaffSession:
    """A full login at `login` from `address`, logged out at `ended` (None: still live), last seen then."""
    user = make_user(session, "agent", email=email)
    _, row = start_session(session, user, stage="full", now=login, ip_address=address)
    if ended is not None:
        row.last_seen_at = ended
        revoke_session(session, row, now=ended)
    session.flush()
    return row
