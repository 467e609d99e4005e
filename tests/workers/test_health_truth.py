"""Issue 15 items 2 and 3: /healthz and `status` tell the truth; the scheduler sweeps by itself while the broker is down.

Real workers, a real relay on loopback (aiosmtpd, stopped for the outage),
the suite's broker (Redis when TEST_BROKER_URL is set) made unreachable by
patching its enqueue, and moved clocks.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import dramatiq
import pytest
import time_machine
from flask import Flask
from sqlalchemy import select

from app.controllers.service import ControllerInput, create_controller
from app.db import utcnow
from app.dsr.models import Dsr
from app.extensions import db
from app.jobs.doorbell import BROKER_OUTAGE
from app.jobs.scheduler import Scheduler, scheduler_for
from app.mail import outbox
from app.mail.models import OutboxEmail
from tests.factories import TEST_PRINCIPAL
from tests.workers.smtp_support import SmtpServer, wait_for
from tests.workers.support import worker
from tests.workers.test_dsr_loop import ingest, subject_mail
from workers import maintenance
from workers.scheduler import JOBS

DPO = "dpo@acme-corp.example"


@pytest.fixture
def desk(mail_app: Flask) -> Flask:
    with mail_app.app_context(), db.session_scope() as session:
        create_controller(
            session,
            ControllerInput(name="Acme Corp", dsr_contacts=[DPO], domains=["acme-corp.example"], identifiers=["ACME-4711"]),
            by=TEST_PRINCIPAL,
            now=utcnow(),
        )
    return mail_app


def healthz(app: Flask) -> tuple[int, dict[str, Any]]:
    response = app.test_client().get("/healthz")
    return response.status_code, response.get_json()


def queue_mail(app: Flask, n: int) -> None:
    with app.app_context(), db.session_scope() as session:
        for i in range(n):
            outbox.enqueue_email(session, to=f"person{i}@example.org", subject="Notice", body_text="Hello", kind="notice", by=TEST_PRINCIPAL, now=utcnow())


def test_healthz_is_503_when_the_workers_heartbeat_is_stale(desk: Flask) -> None:
    # Given a worker answered its heartbeat
    with worker():
        maintenance.heartbeat.send()
        wait_for(lambda: healthz(desk)[1]["workers"]["state"] == "ok")
    status, report = healthz(desk)
    assert status == 200 and report["status"] == "ok" and report["workers"]["age_seconds"] < 60
    # When every worker has been stopped for 70 s
    with time_machine.travel(utcnow() + dt.timedelta(seconds=70), tick=False):
        status, report = healthz(desk)
    # Then /healthz says so with a status a monitor acts on
    assert status == 503 and report["workers"]["state"] == "stale" and report["workers"]["age_seconds"] >= 70
    assert "workers stale" in report["problems"]


def test_healthz_and_status_are_503_while_the_relay_fails_with_mail_waiting_and_ok_after(desk: Flask, smtp: SmtpServer) -> None:
    smtp.stop()
    queue_mail(desk, 4)
    with worker():
        wait_for(lambda: healthz(desk)[1]["relay"]["breaker"] == "open")
        status, report = healthz(desk)
        assert status == 503 and "relay failing" in report["problems"]
        assert report["relay"]["last_failure"] and report["relay"]["last_success"] is None and report["relay"]["consecutive_failures"] >= 3
        assert report["outbox"]["queued"] + report["outbox"]["sending"] == 4 and report["outbox_oldest_waiting_seconds"] is not None
        result = desk.test_cli_runner().invoke(args=["status", "--json"])
        assert result.exit_code == 1 and json.loads(result.output)["relay"]["breaker"] == "open"
        text = desk.test_cli_runner().invoke(args=["status"]).output
        assert "status: degraded (relay failing" in text and "relay: breaker open" in text
        # When the relay returns, the breaker's probe gets through and every waiting email follows at once
        smtp.start()
        wait_for(lambda: len(smtp.received) == 4, timeout=40)
    status, report = healthz(desk)
    assert report["relay"]["breaker"] == "closed" and report["relay"]["last_success"] and "relay failing" not in report["problems"]
    assert "person" not in json.dumps(report)


def test_a_request_within_four_hours_of_its_deadline_not_delivered_makes_healthz_503(desk: Flask, smtp: SmtpServer) -> None:
    smtp.stop()  # the forward cannot be delivered
    start = utcnow()
    with time_machine.travel(start, tick=False):
        assert ingest(desk, subject_mail()) == 0
        status, report = healthz(desk)
    left = report["dsr"]["seconds_left"]
    assert report["dsr"]["state"] == "awaiting_forward" and 23 * 3600 < left <= 24 * 3600
    with time_machine.travel(start + dt.timedelta(hours=20, seconds=1), tick=False):
        status, report = healthz(desk)
        result = desk.test_cli_runner().invoke(args=["status"])
    assert status == 503 and "a request within 4 hours of its deadline is not delivered" in report["problems"]
    assert result.exit_code == 1 and "dsr: oldest undelivered due" in result.output
    assert "jane" not in json.dumps(report).lower() and "jane" not in result.output.lower()


class _Lock:
    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def test_the_scheduler_sweeps_itself_while_the_broker_is_down_logging_once_a_minute(
    desk: Flask, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broker = dramatiq.get_broker()

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    clock = [0.0]
    scheduler = Scheduler(_Lock(), JOBS, app=desk, broker_ok=lambda: False, monotonic=lambda: clock[0])
    caplog.set_level(logging.WARNING)
    try:
        with monkeypatch.context() as patch:
            # Given the broker refuses every message, the subject's doorbell included
            patch.setattr(broker, "enqueue", broker_down)
            assert ingest(desk, subject_mail()) == 0
            caplog.clear()  # (ingest logs its own lost doorbell once)
            # When the leading scheduler ticks once a second for three minutes
            start = utcnow()
            for second in range(180):
                clock[0] = float(second)
                scheduler.tick(start + dt.timedelta(seconds=second))
            # Then it forwarded the request and sent the forward itself: the relay accepted it
            with desk.app_context(), db.session_scope() as session:
                dsr = session.scalars(select(Dsr)).one()
                assert dsr.forwarded_at is not None and dsr.state == "forwarded"
                assert session.scalars(select(OutboxEmail.state).where(OutboxEmail.kind == "dsr_forward")).all() == ["sent"]
            assert len([r for r in smtp.received if DPO in r.rcpt_tos]) == 1
            # And the outage was logged once, then once a minute (not five times a second)
            outage = [r for r in caplog.records if "broker" in r.getMessage() and r.name.startswith("app.jobs")]
            assert 2 <= len(outage) <= 5, [r.getMessage() for r in outage]
            assert not [r for r in caplog.records if "broker unavailable" in r.getMessage()]
        # When the broker answers again, the scheduler goes back to enqueueing
        scheduler.broker_ok = lambda: True
        clock[0] = 400.0
        scheduler.tick(start + dt.timedelta(seconds=400))
        assert scheduler.outage_since is None and not BROKER_OUTAGE.is_set()
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        BROKER_OUTAGE.clear()


def test_the_leading_scheduler_writes_its_beat_and_healthz_reports_its_age(desk: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = Scheduler(_Lock(), [], app=desk, beat=scheduler_for(desk).beat)
    now = utcnow()
    scheduler.tick(now)
    status, report = healthz(desk)
    assert report["scheduler"]["state"] == "ok" and report["scheduler"]["age_seconds"] < 5
    with time_machine.travel(now + dt.timedelta(seconds=75), tick=False):
        status, report = healthz(desk)
    assert status == 503 and report["scheduler"]["state"] == "stale" and "scheduler stale" in report["problems"]
