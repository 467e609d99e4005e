"""Issue 15 item 4: the relay's return is noticed (circuit breaker: open on repeated failure, half-open probe, close on success)."""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Sequence

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


def _outage(app: Flask, smtp: SmtpServer, *, kinds: Sequence[str] = ("dsr_forward",)) -> tuple[OutboundSettings, dt.datetime, list[int]]:
    """The relay is down and one email of each of `kinds` is queued, in that order; three failures (backoff 0.3 s, 0.6 s) open the breaker."""
    smtp.stop()
    settings = OutboundSettings.from_config(app.config)
    start = utcnow()
    with app.app_context(), db.session_scope() as session:
        ids = [_queue(session, 1, kind=kind, now=start)[0] for kind in kinds]
    now = start
    while not _open(app):
        assert now < start + dt.timedelta(seconds=10), "the breaker did not open"
        _deliver_due(app, settings, now)
        now += dt.timedelta(seconds=1)
    return settings, now, ids


def test_a_relay_outage_longer_than_the_attempts_loses_no_mail_it_leaves_when_the_relay_returns(mail_app: Flask, smtp: SmtpServer) -> None:
    # Given the relay is down (nothing listens) and a DSR forward is queued: the breaker opens
    settings, now, [outbox_id] = _outage(mail_app, smtp)
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
    settings, now, [outbox_id] = _outage(mail_app, smtp)
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


def test_every_row_past_the_outage_limit_gives_up_in_the_same_pass_not_one_per_probe(
    mail_app: Flask, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given three DSR forwards waiting out a long outage (limit 3 days)
    mail_app.config["OUTBOX_OUTAGE_GIVE_UP_SECONDS"] = 3 * 24 * 3600
    monkeypatch.setattr(relay, "PROBE_EVERY", dt.timedelta(seconds=2))
    settings, _now, ids = _outage(mail_app, smtp, kinds=("dsr_forward", "dsr_forward", "dsr_forward"))
    with mail_app.app_context(), db.session_scope() as session:
        opened = relay.health(session).opened_at
    assert opened is not None
    outcomes: list[DeliveryOutcome] = []
    with HOOKS.registered("test.outcomes", lambda session, outcome, *, now: outcomes.append(outcome)):
        # When the limit has passed and the outbox makes one pass
        _deliver_due(mail_app, settings, opened + dt.timedelta(days=3, seconds=1))
    # Then all three are failed at once and their owner told (each forward escalates now, not 15 s apart per probe)
    assert [row_of(mail_app, outbox_id).state for outbox_id in ids] == ["failed", "failed", "failed"]
    assert sorted(o.outbox_id for o in outcomes if o.state == "failed") == sorted(ids)


def _doorbells(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, dt.timedelta]]:
    """Record the outbox's doorbells (row id, delay) instead of sending them to the broker."""
    rung: list[tuple[int, dt.timedelta]] = []

    def ring(outbox_ids: Sequence[int], *, delay: dt.timedelta | None = None) -> int:
        rung.extend((outbox_id, delay or dt.timedelta(0)) for outbox_id in outbox_ids)
        return len(outbox_ids)

    monkeypatch.setattr(delivery, "ring_doorbell", ring)
    return rung


def _play_doorbells(app: Flask, settings: OutboundSettings, rung: list[tuple[int, dt.timedelta]], *, start: dt.datetime, until: dt.datetime) -> None:
    """The broker's delayed doorbells played at their own times, from a doorbell at each queued row's due time.

    Doorbells due at the same moment are taken lowest id first: with several worker threads any order may happen,
    and the tester saw this one (the lower-ranked, older row first). Deterministic: no threads, the clock is ours.
    """
    with app.app_context():
        with db.session_scope() as session:
            queued = session.execute(select(OutboxEmail.due_at, OutboxEmail.id).where(OutboxEmail.state == "queued")).all()
        bells = [(max(due_at, start), outbox_id) for due_at, outbox_id in queued]
        heapq.heapify(bells)
        while bells and bells[0][0] <= until:
            at, outbox_id = heapq.heappop(bells)
            rung.clear()
            delivery.deliver(db.session_scope, outbox_id, settings=settings, clock=lambda at=at: at)
            for again, delay in rung:
                heapq.heappush(bells, (at + delay, again))


def _received_order(app: Flask, smtp: SmtpServer, ids: Sequence[int]) -> list[int]:
    by_message_id = {row_of(app, outbox_id).message_id: outbox_id for outbox_id in ids}
    return [by_message_id[str(r.message["Message-ID"])] for r in smtp.received]


def test_a_dsr_forward_held_for_the_same_probe_as_an_older_notice_leaves_first_when_the_relay_returns(
    mail_app: Flask, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the relay is down, a notice was queued and then a DSR forward (the notice has the lower id): both are held
    settings, now, [notice, forward] = _outage(mail_app, smtp, kinds=("notice", "dsr_forward"))
    rung = _doorbells(monkeypatch)
    with mail_app.app_context(), db.session_scope() as session:
        probe_at = relay.health(session).probe_at
    assert probe_at is not None
    # When the relay is back at the next probe and every held row's doorbell rings, the notice's first
    smtp.start()
    _play_doorbells(mail_app, settings, rung, start=now, until=probe_at + dt.timedelta(seconds=30))
    # Then the forward took the probe and left before the notice (both sent once)
    assert _received_order(mail_app, smtp, [notice, forward]) == [forward, notice]
    assert not _open(mail_app)


def test_on_the_relays_return_forwards_then_escalations_then_the_rest_even_when_the_lower_ranked_bells_ring_first(
    mail_app: Flask, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the relay is down and a notice, an escalation and two DSR forwards were queued in that order (lowest id first)
    settings, now, ids = _outage(mail_app, smtp, kinds=("notice", "dsr_escalation", "dsr_forward", "dsr_forward"))
    notice, escalation, forward1, forward2 = ids
    rung = _doorbells(monkeypatch)
    # When the relay returns, and every doorbell due at the same moment is taken lowest id first
    smtp.start()
    _play_doorbells(mail_app, settings, rung, start=now, until=now + dt.timedelta(minutes=2))
    # Then they arrive in the promised order: the DSR forwards, the escalation, the rest
    assert _received_order(mail_app, smtp, ids) == [forward1, forward2, escalation, notice]


def test_rows_already_due_at_the_relays_return_are_released_in_rank_order_with_the_others(session: Session) -> None:
    now = utcnow()
    [notice] = _queue(session, 1, now=now)
    [held_forward, due_forward] = _queue(session, 2, kind="dsr_forward", now=now)
    # Given a notice and a forward already due (their doorbells not yet taken), and a forward held for a later probe
    session.get_one(OutboxEmail, held_forward).due_at = now + dt.timedelta(seconds=15)
    session.flush()
    for _ in range(relay.OPEN_AFTER):
        relay.note_failure(session, "SMTP server unreachable or connection failed (ConnectionRefusedError)", now=now)
    # When the relay returns a second later
    back = now + dt.timedelta(seconds=1)
    assert relay.note_success(session, now=back) is True
    # Then all three are released and rung in rank order, the already-due forward first (it waited longest)
    assert relay.bring_forward(session, now=back) == [due_forward, held_forward, notice]
    assert delivery.due_for_delivery(session, now=back, timing=OutboxTiming()) == [due_forward, held_forward, notice]


def _relay_returning(app: Flask) -> tuple[OutboundSettings, dt.datetime, int, int]:
    """A notice, then a DSR forward, queued during an outage that opened the breaker; (settings, now, notice, forward)."""
    settings = OutboundSettings.from_config(app.config)
    back = utcnow()
    with app.app_context(), db.session_scope() as session:
        [notice] = _queue(session, 1, now=back - dt.timedelta(minutes=5))
        [forward] = _queue(session, 1, kind="dsr_forward", now=back - dt.timedelta(minutes=5))
        for _ in range(relay.OPEN_AFTER):
            relay.note_failure(session, "SMTP server unreachable or connection failed (ConnectionRefusedError)", now=back - dt.timedelta(minutes=4))
    return settings, back, notice, forward


def test_after_the_relays_return_a_notice_gives_way_to_a_due_forward_for_at_most_the_order_window(mail_app: Flask, smtp: SmtpServer) -> None:
    settings, back, notice, forward = _relay_returning(mail_app)
    with mail_app.app_context(), db.session_scope() as session:
        # Given the relay has just returned, and a DSR forward released with the notice is due but not yet taken
        assert relay.note_success(session, now=back) is True
    with mail_app.app_context():
        # When a worker takes the notice first: it waits (one second before the window ends, still)
        at = back + relay.ORDER_WINDOW - dt.timedelta(seconds=1)
        assert delivery.deliver(db.session_scope, notice, settings=settings, clock=lambda: at) == "queued"
        assert smtp.received == []
        # Then, one second after the window, it leaves even though the forward is still not taken (nothing starves)
        after = back + relay.ORDER_WINDOW + dt.timedelta(seconds=1)
        assert delivery.deliver(db.session_scope, notice, settings=settings, clock=lambda: after) == "sent"
        assert delivery.deliver(db.session_scope, forward, settings=settings, clock=lambda: after) == "sent"
    assert _received_order(mail_app, smtp, [notice, forward]) == [notice, forward]


def test_after_the_relays_return_a_notice_waits_while_a_forward_released_with_it_is_being_sent(mail_app: Flask, smtp: SmtpServer) -> None:
    settings, back, notice, forward = _relay_returning(mail_app)
    with mail_app.app_context(), db.session_scope() as session:
        assert relay.note_success(session, now=back) is True
    with mail_app.app_context():
        # Given another worker has claimed the forward and is sending it
        with db.session_scope() as session:
            assert delivery.claim(session, forward, now=back, timing=settings.timing) is not None
        # When a worker takes the notice meanwhile: it waits for the forward to leave
        assert delivery.deliver(db.session_scope, notice, settings=settings, clock=lambda: back + dt.timedelta(seconds=1)) == "queued"
        assert smtp.received == []
