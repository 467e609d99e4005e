"""A canary in an expired ticket is gone after a retention run: from every table (decrypted), the index and the SQLite file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app.db import utcnow
from app.extensions import db
from app.jobs.locks import ProcessLock
from app.mail.outbox import enqueue_email
from app.retention import runner
from app.retention.schedule import run_lock
from app.tickets import service as tickets
from app.tickets.identifiers import MessageIdentifier
from app.tickets.models import Ticket
from tests.factories import TEST_PRINCIPAL, make_controller
from tests.retention.support import SYSTEM, close_at
from tests.subject_data.support import CANARIES, CANARY_EMAIL, CANARY_ID, CANARY_NAME, decrypted_hits, raw_mail
from tests.subject_data.test_canary import plain_hits

LONG_AGO = dt.datetime(2021, 3, 1, 9, 0, tzinfo=dt.UTC)


def test_a_canary_in_an_expired_ticket_is_gone_from_every_table_and_the_file(committed_app: Flask) -> None:
    with committed_app.app_context():
        # Given a ticket closed long ago whose requester, messages, raw originals, file and reply carry a canary
        with db.session_scope() as session:
            controller = make_controller(session)
            ticket = tickets.create_ticket(
                session,
                controller_id=controller.id,
                requester_name=CANARY_NAME,
                requester_email=CANARY_EMAIL,
                subject=f"Account {CANARY_ID}",
                by=TEST_PRINCIPAL,
                now=LONG_AGO,
            )
            for i in range(3):
                message = tickets.add_message(
                    session,
                    ticket,
                    tickets.MessageInput(
                        direction="inbound",
                        sender_name=CANARY_NAME,
                        sender_email=CANARY_EMAIL,
                        body_text=f"I am {CANARY_NAME}, account {CANARY_ID}, message {i}.",
                        raw=raw_mail(900 + i),
                    ),
                    by=TEST_PRINCIPAL,
                    now=LONG_AGO,
                )
            tickets.add_attachment(
                session, message, filename=f"{CANARY_NAME}.txt", content_type="text/plain", content=CANARY_ID.encode(), by=TEST_PRINCIPAL, now=LONG_AGO
            )
            enqueue_email(
                session,
                to=CANARY_EMAIL,
                subject=f"Re: Account {CANARY_ID}",
                body_text=f"Dear {CANARY_NAME}",
                controller_id=controller.id,
                related_type="ticket",
                related_id=ticket.id,
                kind="reply",
                by=TEST_PRINCIPAL,
                now=LONG_AGO,
            )
            close_at(session, [ticket.id], LONG_AGO)
            ticket_id = ticket.id
        with db.session_scope() as session:
            ciphertexts = list(decrypted_hits(session).values())
            assert len(ciphertexts) > 8 and plain_hits(session) == ["outbox_emails.subject"]  # the reply's subject is stored as written
            assert (session.scalar(select(func.count()).select_from(MessageIdentifier)) or 0) > 0
        # When the retention run deletes what is past its period
        lock: ProcessLock = run_lock(committed_app.config, db.engine)
        with lock:
            result = runner.execute(db.session_scope, by=SYSTEM, clock=utcnow)
        assert result.progress.finished
        # Then no table holds the canary, decrypted or as stored, and the identifier index forgot it
        with db.session_scope() as session:
            assert decrypted_hits(session) == {} and plain_hits(session) == []
            assert session.scalar(select(func.count()).select_from(MessageIdentifier)) == 0
            assert session.get(Ticket, ticket_id) is None
        url = make_url(str(db.engine.url))
    if url.get_backend_name() != "sqlite":
        return
    db.state(committed_app).engine.dispose()
    path = Path(url.database or "")
    data = path.read_bytes() + (Path(f"{path}-wal").read_bytes() if Path(f"{path}-wal").exists() else b"")
    # secure_delete zeroed the freed cells; the WAL was truncated after each engine run.
    assert [c for c in CANARIES if c.encode() in data.lower()] == []
    assert [c for c in ciphertexts if c[20:52] in data] == []
