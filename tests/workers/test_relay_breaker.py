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
from app.mail.outbox_settings import OutboundSettings, OutboxTiming
from app.mail.outcomes import HOOKS, DeliveryOutcome
from tests.factories import TEST_PRINCIPAL
from tests.workers.smtp_support import SmtpServer, wait_for
from tests.workers.support import row_of, worker


def _queue(session: Session, n: int, *, kind: str = "notice", now: dt.datetime) -> list[int]:
    return [
        outbox.enqueue_email(session, to=f"person{i}@example.org", subject="Notice", body_text="Hello", kind=kind, by=TEST_PRINCIPAL, now=now).id
        for i in range(n)
    ]


def test_when_the_relay_returns_retries_waiting_in_backoff_are_brought_forward_dsr_forwards_first(session: Session) -> None:
    now = utcnow()
    notices = _queue(session, 2, now=now)
    escalations = _queue(session, 1, kind="dsr_escalation", now=now)
    forwards = _queue(session, 1, kind="dsr_forward", now=now)
    # Given every row failed before and waits in backoff, the forward the longest, the officers' escalation the shortest
    for outbox_id, wait in zip(notices + escalations + forwards, (5, 6, 4, 30), strict=True):
        row = session.get_one(OutboxEmail, outbox_id)
        row.attempts, row.due_at = 3, now + dt.timedelta(minutes=wait)
    session.flush()
    for _ in range(relay.OPEN_AFTER):
        relay.note_failure(session, "SMTP server unreachable or connection failed (ConnectionRefusedError)", now=now)
    assert relay.health(session).open
    # When a send succeeds again
    assert relay.note_success(session, now=now + dt.timedelta(seconds=20)) is True
    released = relay.bring_forward(session, now=now + dt.timedelta(seconds=20))
    # Then every waiting retry is due now: the DSR forward (the 24-hour promise) first, then the escalation, then the rest
    assert released == forwards + escalations + notices
    assert not relay.health(session).open
    due = delivery.due_for_delivery(session, now=now + dt.timedelta(seconds=20), timing=OutboxTiming())
    assert due == forwards + escalations + notices


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


def _deliver_due(app: Flask, settings: OutboundSettings, now: dt.datetime) -> list[str]:
    """One pass of the outbox at `now`, as the sweeper and the workers would make it: every due row, in order."""
    with app.app_context():
        with db.session_scope() as session:
            due = delivery.due_for_delivery(session, now=now, timing=settings.timing)
        return [delivery.deliver(db.session_scope, outbox_id, settings=settings, clock=lambda: now) for outbox_id in due]


def _outage(app: Flask, smtp: SmtpServer, *, kind: str = "dsr_forward") -> tuple[OutboundSettings, dt.datetime, int]:
    """The relay is down and one email is queued; three failures (backoff of 0.3 s, 0.6 s) open the breaker."""
    smtp.stop()
    settings = OutboundSettings.from_config(app.config)
    start = utcnow()
    with app.app_context(), db.session_scope() as session:
        [outbox_id] = _queue(session, 1, kind=kind, now=start)
    now = start
    while not _open(app):
        assert now < start + dt.timedelta(seconds=10), "the breaker did not open"
        _deliver_due(app, settings, now)
        now += dt.timedelta(seconds=1)
    return settings, now, outbox_id


def test_a_relay_outage_longer_than_the_attempts_loses_no_mail_it_leaves_when_the_relay_returns(mail_app: Flask, smtp: SmtpServer) -> None:
    # Given the relay is down (nothing listens) and a DSR forward is queued: the breaker opens
    settings, now, outbox_id = _outage(mail_app, smtp)
    outcomes: list[DeliveryOutcome] = []
    with HOOKS.registered("test.outcomes", lambda session, outcome, *, now: outcomes.append(outcome)):
        # When the outage lasts 20 minutes: 80 probes, far more than the row's 12 attempts
        probes = 0
        for _ in range(80):
            now += relay.PROBE_EVERY
            probes += _deliver_due(mail_app, settings, now).count("queued")
        # Then the email is still queued, waiting for the next probe; no failed attempt of the outage was counted
        row = row_of(mail_app, outbox_id)
        assert row.state == "queued" and row.attempts < settings.timing.max_attempts
        assert probes >= 3 * settings.timing.max_attempts  # it was tried at (nearly) every probe
        assert row.due_at <= now + relay.PROBE_EVERY
        assert "unreachable" in (row.last_error or "")
        assert outcomes == []  # nothing was reported failed to the DSR (which would escalate a refusal at once)
        # When the relay returns, the next probe sends it
        smtp.start()
        now += relay.PROBE_EVERY
        assert _deliver_due(mail_app, settings, now) == ["sent"]
    # Then it arrived once, the breaker is closed, and the sent row shows no error
    assert [r.message["Message-ID"] for r in smtp.received] == [row.message_id]
    done = row_of(mail_app, outbox_id)
    assert done.state == "sent" and done.last_error is None
    assert done.delivery_note is not None and "fail" in done.delivery_note
    assert [o.state for o in outcomes] == ["sent"]
    assert not _open(mail_app)


def test_a_row_waiting_out_an_outage_gives_up_only_after_the_outage_limit_and_the_owner_is_told(
    mail_app: Flask, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    mail_app.config["OUTBOX_OUTAGE_GIVE_UP_SECONDS"] = 3 * 24 * 3600
    monkeypatch.setattr(relay, "PROBE_EVERY", dt.timedelta(seconds=2))  # a probe one second before the limit, the next one after
    settings, now, outbox_id = _outage(mail_app, smtp)
    assert settings.timing.outage_give_up == dt.timedelta(days=3)
    with mail_app.app_context(), db.session_scope() as session:
        opened = relay.health(session).opened_at
    assert opened is not None
    outcomes: list[DeliveryOutcome] = []
    with HOOKS.registered("test.outcomes", lambda session, outcome, *, now: outcomes.append(outcome)):
        # One second before the row has waited three days in the outage: still queued
        assert _deliver_due(mail_app, settings, opened + dt.timedelta(days=3, seconds=-1)) == ["queued"]
        assert row_of(mail_app, outbox_id).state == "queued" and outcomes == []
        # One second after: failed, and the owning domain is told (a DSR forward escalates to the privacy officers)
        assert _deliver_due(mail_app, settings, opened + dt.timedelta(days=3, seconds=1)) == ["failed"]
    row = row_of(mail_app, outbox_id)
    assert row.state == "failed" and row.delivery_note == "gave up after waiting 3 days for the relay"
    assert [(o.state, o.kind, o.permanent) for o in outcomes] == [("failed", "dsr_forward", False)]
    assert smtp.received == []
