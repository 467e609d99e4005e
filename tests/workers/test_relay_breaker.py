"""Issue 15 item 4: the relay's return is noticed (circuit breaker: open on repeated failure, half-open probe, close on success)."""

from __future__ import annotations

import datetime as dt

import dramatiq
import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import utcnow
from app.extensions import db
from app.mail import delivery, outbox, relay
from app.mail.models import OutboxEmail
from app.mail.outbox_settings import OutboxTiming
from tests.factories import TEST_PRINCIPAL
from tests.workers.smtp_support import SmtpServer, wait_for
from tests.workers.support import worker


def _queue(session: Session, n: int, *, kind: str = "notice", now: dt.datetime) -> list[int]:
    return [
        outbox.enqueue_email(session, to=f"person{i}@example.org", subject="Notice", body_text="Hello", kind=kind, by=TEST_PRINCIPAL, now=now).id
        for i in range(n)
    ]


def test_when_the_relay_returns_retries_waiting_in_backoff_are_brought_forward_dsr_forwards_first(session: Session) -> None:
    now = utcnow()
    notices = _queue(session, 2, now=now)
    forwards = _queue(session, 1, kind="dsr_forward", now=now)
    # Given every row failed before and waits in backoff, the forward the longest
    for outbox_id, wait in zip(notices + forwards, (5, 6, 30), strict=True):
        row = session.get_one(OutboxEmail, outbox_id)
        row.attempts, row.due_at = 3, now + dt.timedelta(minutes=wait)
    session.flush()
    for _ in range(relay.OPEN_AFTER):
        relay.note_failure(session, "SMTP server unreachable or connection failed (ConnectionRefusedError)", now=now)
    assert relay.health(session).open
    # When a send succeeds again
    assert relay.note_success(session, now=now + dt.timedelta(seconds=20)) is True
    released = relay.bring_forward(session, now=now + dt.timedelta(seconds=20))
    # Then every waiting retry is due now, the DSR forward first
    assert released == forwards + notices
    assert not relay.health(session).open
    due = delivery.due_for_delivery(session, now=now + dt.timedelta(seconds=20), timing=OutboxTiming())
    assert due[0] == forwards[0] and set(due) >= set(notices + forwards)


def test_a_relay_outage_opens_the_breaker_and_the_relays_return_sends_everything_within_a_probe(
    mail_app: Flask, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retries back off for ten minutes at least: without the breaker, the mail would wait that long after the relay's return
    mail_app.config.update(OUTBOX_RETRY_BASE_SECONDS=600)
    monkeypatch.setattr(relay, "PROBE_EVERY", dt.timedelta(seconds=2))
    dramatiq.get_broker().flush_all()
    smtp.stop()
    with mail_app.app_context(), db.session_scope() as session:
        _queue(session, 5, now=utcnow())
    with worker():
        with mail_app.app_context():
            wait_for(lambda: _open(mail_app))
            with db.session_scope() as session:
                attempts = sum(session.scalars(select(OutboxEmail.attempts)))
            # While open, the rows wait for the probe instead of each burning attempts against a dead relay
            assert attempts <= relay.OPEN_AFTER + 2
        smtp.start()
        back = utcnow()
        # The retries' own backoff would hold them 600 s; the probe (every 2 s here) brings them forward at once. The
        # bound leaves room for a loaded CI machine (two test runs side by side on two cores) and stays far below 600 s.
        wait_for(lambda: len(smtp.received) == 5, timeout=120)
        assert utcnow() - back < dt.timedelta(seconds=120)
    assert not _open(mail_app)


def _open(app: Flask) -> bool:
    with app.app_context(), db.session_scope() as session:
        return relay.health(session).open
